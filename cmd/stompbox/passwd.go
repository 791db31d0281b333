package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/stompbox/stompbox/server/auth"
)

// runPasswd is `stompbox passwd`: it adds a user to a users file, or
// replaces the user's password and roles, reading the password from the
// first line of stdin so it never appears in argv or shell history.
//
//	printf '%s\n' "$PASSWORD" | stompbox passwd -users-file users -user alice -roles admin
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stompbox passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("users-file", "", "users file to write (created with mode 0600 if missing)")
	user := fs.String("user", "", "user name")
	roles := fs.String("roles", "", "comma-separated roles for ACL rules")
	cost := fs.Int("cost", 0, "bcrypt cost (0: the default, 10)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: stompbox passwd -users-file FILE -user NAME [-roles a,b] < password")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *file == "" || *user == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	password, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "stompbox passwd: reading the password from stdin:", err)
		return 1
	}
	password = strings.TrimRight(password, "\r\n")
	if password == "" {
		fmt.Fprintln(stderr, "stompbox passwd: no password on stdin (the first line is the password)")
		return 2
	}
	var roleList []string
	for r := range strings.SplitSeq(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			roleList = append(roleList, r)
		}
	}
	if err := auth.SetPassword(*file, *user, password, roleList, *cost); err != nil {
		fmt.Fprintln(stderr, "stompbox passwd:", err)
		return 1
	}
	fmt.Fprintf(stdout, "user %s written to %s\n", *user, *file)
	return 0
}
