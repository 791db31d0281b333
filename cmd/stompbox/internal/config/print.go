package config

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Print writes the effective configuration as a YAML file that Load reads
// back to the same values, secrets (admin.token, admin.read_token) aside:
// a secret that is set is printed empty, its comment saying so. A comment
// on each line says where the value came from.
func (l *Loaded) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "# stompbox effective configuration")
	var open []string // the sections the previous option was in, outermost first
	for _, o := range Options() {
		path := strings.Split(o.Key, ".")
		sections, leaf := path[:len(path)-1], path[len(path)-1]
		// Open the sections this option does not share with the previous
		// one (cluster.embedded_nats nests two deep).
		same := 0
		for same < len(open) && same < len(sections) && open[same] == sections[same] {
			same++
		}
		for i := same; i < len(sections); i++ {
			fmt.Fprintf(tw, "%s%s:\n", strings.Repeat("  ", i), sections[i])
		}
		open = sections
		value, source := formatYAML(o.field(&l.Config)), l.Sources[o.Key].String()
		if o.Secret && !o.field(&l.Config).IsZero() {
			value, source = `""`, source+" (a secret: set, not printed)"
		}
		fmt.Fprintf(tw, "%s%s: %s\t# %s\n", strings.Repeat("  ", len(sections)), leaf, value, source)
	}
	return tw.Flush()
}
