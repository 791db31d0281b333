//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// The metrics check of deploy/: the dashboard's and the alerts' metrics and
// labels against a real broker's /metrics.

// adminAddr matches the admin listener's address in the broker's log: an
// attribute of the "stompbox listening" line (or of an "admin listening"
// line of its own in older builds).
var adminAddr = regexp.MustCompile(`msg="(?:stompbox|admin) listening".* admin=(\S+)`)

// TestDeployMetricsExist runs a real broker with a journal and TLS through
// a small scenario (persistent SEND with receipt, NACK and redelivery, ACK,
// a topic, an ERROR, a WebSocket session, a SIGHUP certificate reload) and
// requires every metric the dashboard and the alerts query to be on its
// /metrics, with the labels and label values they use.
func TestDeployMetricsExist(t *testing.T) {
	used := queriedMetrics(t)
	tc := writeE2ECert(t, t.TempDir(), 1)
	cert, key := tc.certFile, tc.keyFile
	b := startBroker(t, "-journal-dir", t.TempDir(), "-tls-listen", "127.0.0.1:0", "-tls-cert", cert, "-tls-key", key)
	defer b.stop()
	m := adminAddr.FindStringSubmatch(b.log.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", b.log.String())
	}
	metricsURL := "http://" + m[1] + "/metrics"
	deployScenario(t, b)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}

	var page metricsPage
	missing := func() []string {
		page = scrape(t, metricsURL)
		var out []string
		for name := range used {
			if !page.hasFamily(name) {
				out = append(out, name+" ("+strings.Join(used[name], ", ")+")")
			}
		}
		slices.Sort(out)
		return out
	}
	var miss []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		// A labelled series may appear only once observed, a close is
		// counted a little after the client saw it, and SIGHUP is async.
		if miss = missing(); len(miss) == 0 || time.Now().After(deadline) {
			break
		}
	}
	t.Run("EveryQueriedFamily", func(t *testing.T) {
		for _, name := range miss {
			t.Errorf("%s is queried but not on /metrics", name)
		}
	})
	t.Run("QueriedLabelsExist", func(t *testing.T) {
		// Labels in `by (...)` and in selectors must be on the metric's
		// series, and a label compared with = or != to a literal must
		// take that value (instance and job are Prometheus's).
		check := func(where, metric, label, value string) {
			if label == "instance" || label == "job" || page.labels[metric] == nil {
				return // absent families are reported by EveryQueriedFamily
			}
			if vals, ok := page.labels[metric][label]; !ok {
				t.Errorf("%s: %s has no label %q", where, metric, label)
			} else if value != "" && !vals[value] {
				t.Errorf("%s: %s{%s} never takes the value %q", where, metric, label, value)
			}
		}
		for expr, where := range queries(t) {
			for _, g := range groupBy.FindAllStringSubmatch(expr, -1) {
				for _, l := range strings.Split(g[1], ",") {
					check(where[0], g[2], strings.TrimSpace(l), "")
				}
			}
			for _, sel := range selector.FindAllStringSubmatch(expr, -1) {
				for _, mt := range matcher.FindAllStringSubmatch(sel[2], -1) {
					if mt[2] == "=" || mt[2] == "!=" {
						check(where[0], sel[1], mt[1], mt[3])
					} else {
						check(where[0], sel[1], mt[1], "")
					}
				}
			}
		}
	})
	t.Run("JournalHistogramsObserved", func(t *testing.T) {
		for _, h := range []string{"stompbox_journal_append_duration_seconds", "stompbox_journal_fsync_duration_seconds"} {
			if !regexp.MustCompile(`(?m)^` + h + `_count(\{[^}]*\})? [1-9]`).MatchString(page.text) {
				t.Errorf("%s_count is not positive after persistent SENDs", h)
			}
		}
	})
}

var (
	// groupBy: `by (a, b) (rate(metric` or `by (a) (metric`.
	groupBy  = regexp.MustCompile(`by \(([a-z_, ]+)\) \((?:(?:rate|increase)\()?((?:stompbox|go|process)_[a-zA-Z0-9_]+)`)
	selector = regexp.MustCompile(`((?:stompbox|go|process)_[a-zA-Z0-9_]+)\{([^}]*)\}`)
	matcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

// metricsPage is one scrape of /metrics.
type metricsPage struct {
	text   string
	types  map[string]string                     // family -> TYPE
	labels map[string]map[string]map[string]bool // series name -> label -> values
}

func (p metricsPage) hasFamily(name string) bool {
	if _, ok := p.types[name]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if typ := p.types[base]; typ == "histogram" || (typ == "summary" && suf != "_bucket") {
				return true
			}
		}
	}
	return false
}

func scrape(t *testing.T, url string) metricsPage {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %v", url, resp.Status, err)
	}
	p := metricsPage{text: string(body), types: map[string]string{}, labels: map[string]map[string]map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			p.types[f[2]] = f[3]
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			continue
		}
		name, rest := line[:i], ""
		if line[i] == '{' {
			rest = line[i+1 : max(i+1, strings.LastIndexByte(line, '}'))]
		}
		if p.labels[name] == nil {
			p.labels[name] = map[string]map[string]bool{}
		}
		for _, mt := range matcher.FindAllStringSubmatch(rest, -1) {
			if p.labels[name][mt[1]] == nil {
				p.labels[name][mt[1]] = map[string]bool{}
			}
			p.labels[name][mt[1]][mt[3]] = true
		}
	}
	return p
}

func deployScenario(t *testing.T, b *brokerProc) {
	t.Helper()
	conn, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	const queue = "/queue/deploy"
	for i := range 3 {
		if err := conn.Send(queue, "text/plain", fmt.Appendf(nil, "m%d", i), stomp.SendOpt.Receipt,
			stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := conn.Subscribe(queue, stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := conn.Subscribe("/topic/deploy", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Send("/topic/deploy", "text/plain", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	recv := func(s *stomp.Subscription) *stomp.Message {
		select {
		case msg := <-s.C:
			if msg == nil || msg.Err != nil {
				t.Fatalf("receive: %v", msg)
			}
			return msg
		case <-time.After(5 * time.Second):
			t.Fatal("no message within 5s")
			return nil
		}
	}
	recv(topic)
	if err := conn.Nack(recv(sub)); err != nil {
		t.Fatal(err)
	}
	for range 3 { // the NACKed one comes back among them
		if err := conn.Ack(recv(sub)); err != nil {
			t.Fatal(err)
		}
	}
	// No Unsubscribe: go-stomp v3.1.3 can miss the wake-up of its RECEIPT
	// and wait 30s (a lost sync.Cond broadcast); DISCONNECT ends both.
	if err := conn.Disconnect(); err != nil {
		t.Fatal(err)
	}

	// An ERROR frame: SUBSCRIBE without a destination.
	c, r := connectRaw(t, b.addr)
	if _, err := io.WriteString(c, "SUBSCRIBE\nid:1\n\n\x00"); err != nil {
		t.Fatal(err)
	}
	if got := readUntilEOF(t, c, r); !strings.HasPrefix(got, "ERROR\n") {
		t.Fatalf("SUBSCRIBE without destination: got %q, want ERROR", got)
	}

	// A WebSocket session ended by DISCONNECT (close 1000).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wc, br, _, err := ws.Dialer{Protocols: []string{"v12.stomp"}}.Dial(ctx, "ws://"+b.httpAddr+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	if br != nil {
		ws.PutReader(br)
	}
	_ = wc.SetDeadline(time.Now().Add(5 * time.Second))
	for _, f := range []string{"CONNECT\naccept-version:1.2\nhost:x\n\n\x00", "DISCONNECT\nreceipt:bye\n\n\x00"} {
		if err := wsutil.WriteClientText(wc, []byte(f)); err != nil {
			t.Fatal(err)
		}
		if data, _, err := wsutil.ReadServerData(wc); err != nil || bytes.HasPrefix(data, []byte("ERROR")) {
			t.Fatalf("WebSocket %q: %q %v", f[:strings.IndexByte(f, '\n')], data, err)
		}
	}
	_, _, err = wsutil.ReadServerData(wc)
	if !errors.As(err, new(wsutil.ClosedError)) {
		t.Fatalf("after DISCONNECT over WebSocket: %v, want a close", err)
	}
}
