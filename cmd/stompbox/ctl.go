package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// The defaults of `stompbox ctl` (docs/operations.md, "stompbox ctl").
const (
	ctlDefaultURL = "http://127.0.0.1:61680"
	// ctlMaxBody bounds what ctl reads of one answer: a page of 1000
	// connections with their subscriptions is far below it, and a broken
	// or hostile endpoint cannot make ctl buffer without end.
	ctlMaxBody = 64 << 20
)

// errCtlHelp is -h on a command: its usage was printed, exit 0.
var errCtlHelp = errors.New("help requested")

// usageError is a command line ctl cannot run: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// apiError is an answer of the admin API outside 2xx: its {"error"} text
// (or the start of the body when it is not one) and the HTTP status.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, http.StatusText(e.Status))
}

// ctl is one `stompbox ctl` invocation: where the admin API is, how to
// authenticate, how to print.
type ctl struct {
	base     *url.URL
	user     string
	password string
	token    string
	json     bool
	timeout  time.Duration
	client   *http.Client
	stdout   io.Writer
	stderr   io.Writer
	now      func() time.Time // ages in tables are relative to it
}

// runCtl is `stompbox ctl [flags] COMMAND [args]`: the admin API from the
// command line. Exit status: 0 done, 1 the API refused or could not be
// reached (its error printed), 2 usage.
func runCtl(args, environ []string, stdout, stderr io.Writer) int {
	return runCtlAt(args, environ, stdout, stderr, time.Now)
}

// runCtlAt is runCtl with the clock the ages are computed against (tests
// pin it).
func runCtlAt(args, environ []string, stdout, stderr io.Writer, now func() time.Time) int {
	env := envMap(environ)
	fs := flag.NewFlagSet("stompbox ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.String("admin", envOr(env, "STOMPBOX_ADMIN_URL", ctlDefaultURL), "admin API base URL ($STOMPBOX_ADMIN_URL)")
	token := fs.String("token", env["STOMPBOX_ADMIN_TOKEN"], "bearer token ($STOMPBOX_ADMIN_TOKEN)")
	user := fs.String("user", "", "user of the users file (role admin or monitor), HTTP Basic")
	password := fs.String("password", env["STOMPBOX_ADMIN_PASSWORD"], "password of -user ($STOMPBOX_ADMIN_PASSWORD)")
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each request")
	fs.Usage = func() { ctlUsage(stderr); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	c := &ctl{
		user: *user, password: *password, token: *token, json: *asJSON, timeout: *timeout,
		stdout: stdout, stderr: stderr, now: now,
	}
	if err := c.check(*admin); err != nil {
		fmt.Fprintln(stderr, "stompbox ctl:", err)
		return 2
	}
	// A transport of its own, closed at the end: ctl leaves no idle
	// connection (nor its goroutines) behind when used as a library.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	c.client = &http.Client{Transport: tr}

	name, rest := fs.Arg(0), fs.Args()[1:]
	cmd, ok := ctlCommandNamed(name)
	if !ok {
		fmt.Fprintf(stderr, "stompbox ctl: unknown command %q\n", name)
		ctlUsage(stderr)
		return 2
	}
	err := cmd.run(c, rest)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errCtlHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "stompbox ctl %s: %v\nusage: stompbox ctl %s %s\n", name, err, name, cmd.args)
		return 2
	default:
		fmt.Fprintf(stderr, "stompbox ctl %s: %v\n", name, err)
		return 1
	}
}

// check validates the global flags.
func (c *ctl) check(admin string) error {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-admin %q: want an http:// or https:// URL", admin)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	c.base = u
	if c.user != "" && c.password == "" {
		return errors.New("-user needs -password or $STOMPBOX_ADMIN_PASSWORD")
	}
	if c.timeout <= 0 {
		return fmt.Errorf("-timeout %v: want a positive duration", c.timeout)
	}
	return nil
}

func ctlUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: stompbox ctl [-admin URL] [-token T] [-user U -password P] [-json] [-timeout 10s] COMMAND [args]")
	fmt.Fprintln(w, "commands:")
	for _, cmd := range ctlCommands() {
		fmt.Fprintf(w, "  %-12s %s\n", cmd.name, cmd.args)
	}
}

// endpoint is the URL of path (already escaped) under the base URL, with
// query.
func (c *ctl) endpoint(path string, query url.Values) string {
	u := *c.base
	// RawPath keeps an escaped "/" inside an ID as %2F; Path is its
	// decoded form, which url.URL wants to agree with RawPath.
	u.RawPath = c.base.EscapedPath() + path
	if p, err := url.PathUnescape(u.RawPath); err == nil {
		u.Path = p
	}
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	return u.String()
}

// call sends one request (body, when not nil, as JSON) within -timeout
// and returns the answer's body; an answer outside 2xx is an *apiError.
func (c *ctl) call(method, path string, query url.Values, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	target := c.endpoint(path, query)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", target, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case c.user != "":
		req.SetBasicAuth(c.user, c.password)
	case c.token != "":
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, c.transportError(target, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, ctlMaxBody+1))
	if err != nil {
		return nil, c.transportError(target, err)
	}
	if len(data) > ctlMaxBody {
		return nil, fmt.Errorf("%s: answer larger than %d bytes", target, ctlMaxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &apiError{Status: resp.StatusCode, Message: errorText(data)}
	}
	return data, nil
}

// transportError says which URL could not be reached, and why, in words
// an operator acts on.
func (c *ctl) transportError(target string, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("connection refused by %s (is the broker running, admin.listen set?): %w", target, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from %s within %v (-timeout): %w", target, c.timeout, err)
	default:
		return fmt.Errorf("%s: %w", target, err)
	}
}

// errorText is the {"error"} of an API error body, or its first line
// when it is not one (a proxy's page, say).
func errorText(data []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(data))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		return "no error text"
	}
	return s
}

// get fetches path and, with -json, prints the answer (indented) and
// returns nil data; otherwise decodes it into v for a table.
func (c *ctl) get(path string, query url.Values, v any) (printed bool, err error) {
	data, err := c.call(http.MethodGet, path, query, nil)
	if err != nil {
		return false, err
	}
	return c.decodeOrPrint(data, v)
}

// post sends an action; like get.
func (c *ctl) post(path string, body, v any) (printed bool, err error) {
	data, err := c.call(http.MethodPost, path, nil, body)
	if err != nil {
		return false, err
	}
	return c.decodeOrPrint(data, v)
}

func (c *ctl) decodeOrPrint(data []byte, v any) (bool, error) {
	if c.json {
		var buf bytes.Buffer
		if err := json.Indent(&buf, data, "", "  "); err != nil {
			return false, fmt.Errorf("the API answered something that is not JSON: %w", err)
		}
		buf.WriteByte('\n')
		_, err := c.stdout.Write(buf.Bytes())
		return true, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decoding the API's answer: %w", err)
	}
	return false, nil
}

// parseInterspersed parses flags anywhere among args (`purge /queue/x
// -vhost v` as well as `purge -vhost v /queue/x`) and returns the
// positional arguments; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for range len(args) + 1 { // each round consumes at least one argument
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errCtlHelp
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func envOr(env map[string]string, key, def string) string {
	if v := env[key]; v != "" {
		return v
	}
	return def
}

// Human units for tables.

// fmtBytes is n in B, KiB, MiB, GiB or TiB.
func fmtBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB"} {
		f /= 1024
		if f < 1024 && f > -1024 {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	return fmt.Sprintf("%.1f TiB", f/1024)
}

// fmtAge is a duration rounded for a table: 42s, 5m12s, 3h05m, 2d03h.
func fmtAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

// fmtSince is the age of t, "-" when t is zero (JSON null).
func (c *ctl) fmtSince(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmtAge(c.now().Sub(t))
}

func fmtSeconds(s float64) string {
	return fmtAge(time.Duration(s * float64(time.Second)))
}

func fmtRate(r float64) string { return fmt.Sprintf("%.1f/s", r) }

// fmtLatency is a duration in seconds with a precision fit for fsync
// latencies (µs to s).
func fmtLatency(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
