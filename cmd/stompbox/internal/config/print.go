package config

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Print writes the effective configuration as a YAML file that Load reads
// back to the same values; a comment on each line says where the value
// came from.
func (l *Loaded) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "# stompbox effective configuration")
	section := ""
	for _, o := range Options() {
		indent := ""
		if head, leaf, nested := strings.Cut(o.Key, "."); nested {
			if head != section {
				fmt.Fprintf(tw, "%s:\n", head)
				section = head
			}
			indent = "  "
			fmt.Fprintf(tw, "%s%s: %s\t# %s\n", indent, leaf, formatYAML(o.field(&l.Config)), l.Sources[o.Key])
			continue
		}
		section = ""
		fmt.Fprintf(tw, "%s: %s\t# %s\n", o.Key, formatYAML(o.field(&l.Config)), l.Sources[o.Key])
	}
	return tw.Flush()
}
