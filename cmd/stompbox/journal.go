package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
	"github.com/stompbox/stompbox/persistence"
)

// runJournal is `stompbox journal check|dump|repair -journal-dir DIR`:
// the offline tools for the disk journal (docs/persistence.md). Exit
// status: 0 healthy (check) or repaired (repair) or dumped; 1 damaged
// (check) or still damaged after a repair; 2 usage, I/O error, or a
// journal a newer version wrote.
func runJournal(args, environ []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: stompbox journal check|dump|repair -journal-dir DIR")
		fmt.Fprintln(stderr, "  check   verify every segment and record; exit 0 healthy, 1 damaged")
		fmt.Fprintln(stderr, "  dump    list every record and damaged range")
		fmt.Fprintln(stderr, "  repair  (broker stopped) keep damaged bytes aside in DIR/damaged and rewrite damaged segments")
	}
	if len(args) == 0 {
		usage()
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("stompbox journal "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("journal-dir", "", "journal directory (default: journal.dir of the configuration: -config, $STOMPBOX_CONFIG, $STOMPBOX_JOURNAL_DIR)")
	configFile := fs.String("config", "", "YAML configuration file to take journal.dir from (default $STOMPBOX_CONFIG)")
	fs.Usage = func() { usage(); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dir == "" {
		*dir = configuredJournalDir(*configFile, environ, stderr)
	}
	if *dir == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "stompbox journal: %s is not a journal directory: %v\n", *dir, err)
		return 2
	}
	var (
		rep persistence.Report
		err error
	)
	switch cmd {
	case "check":
		rep, err = persistence.Check(*dir)
	case "repair":
		rep, err = persistence.Repair(*dir, slog.New(slog.NewTextHandler(stderr, nil)))
	case "dump":
		if err := persistence.Dump(*dir, stdout); err != nil {
			fmt.Fprintln(stderr, "stompbox journal dump:", err)
			return 2
		}
		return 0
	default:
		usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "stompbox journal %s: %v\n", cmd, err)
		return 2
	}
	if _, err := rep.WriteTo(stdout); err != nil {
		return 2
	}
	if !rep.Healthy() {
		return 1
	}
	return 0
}

// configuredJournalDir is journal.dir as the broker would read it (a
// configuration file, then STOMPBOX_* variables), so the tools find the
// journal the running broker uses; "" (after saying why) when the
// configuration cannot be read.
func configuredJournalDir(configFile string, environ []string, stderr io.Writer) string {
	var args []string
	if configFile != "" {
		args = []string{"-config", configFile}
	}
	loaded, err := config.Load(args, environ, os.ReadFile, io.Discard)
	if _, invalid := errors.AsType[*config.ValidationError](err); err != nil && !invalid {
		fmt.Fprintln(stderr, "stompbox journal: reading the configuration:", err)
		return ""
	} // a broker could not start on it (no authentication, say), but journal.dir is read

	return loaded.Config.Journal.Dir
}
