//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// ctlTimeout bounds one `stompbox ctl` run.
const ctlTimeout = 20 * time.Second

// ctlRun runs `stompbox ctl` against b's admin listener with the given
// token and returns its standard output, standard error and exit code.
func ctlRun(t *testing.T, b *brokerProc, token string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	full := append([]string{"ctl", "-admin", "http://" + b.adminAddr, "-token", token}, args...)
	cmd := exec.CommandContext(ctx, stompboxBinary(t), full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("stompbox %v: %v", full, err)
	}
	return out.String(), errOut.String(), code
}

// ctlJSON runs ctl with -json, requires exit 0 and decodes the answer.
func ctlJSON(t *testing.T, b *brokerProc, token string, into any, args ...string) {
	t.Helper()
	out, errOut, code := ctlRun(t, b, token, append([]string{"-json"}, args...)...)
	if code != 0 {
		t.Fatalf("ctl %v: exit %d: %s%s", args, code, out, errOut)
	}
	if err := json.Unmarshal([]byte(out), into); err != nil {
		t.Fatalf("ctl %v: %v in %q", args, err, out)
	}
}

// The operator's command line against a real broker: it sees a client's
// connection and subscription, a queue's depth and its messages, purges
// the queue, and closes the connection with a reason the client reads in
// its ERROR. A wrong token is refused (exit 1), and so is an action with
// the read-only token.
func TestCtlAgainstTheBroker(t *testing.T) {
	const admin, reader = "e2e-admin-token-1234567890", "e2e-read-token-1234567890"
	b := startBroker(t, "-admin-token", admin, "-admin-read-token", reader)
	defer b.stop()
	if b.adminAddr == "" {
		t.Fatal("no admin address in the listening line")
	}
	c, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect() }()
	sub, err := c.Subscribe("/queue/ctl-watched", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Send("/queue/ctl-depth", "text/plain", []byte("message "+string(rune('a'+i))), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}

	var conns struct {
		Total int `json:"total"`
		Items []struct {
			ID            string `json:"id"`
			User          string `json:"user"`
			Transport     string `json:"transport"`
			Subscriptions []struct {
				Destination string `json:"destination"`
				Ack         string `json:"ack"`
			} `json:"subscriptions"`
		} `json:"items"`
	}
	ctlJSON(t, b, reader, &conns, "connections")
	if conns.Total != 1 || len(conns.Items) != 1 {
		t.Fatalf("connections %+v, want the test's one", conns)
	}
	cn := conns.Items[0]
	if cn.User != "anonymous" || cn.Transport != "tcp" || len(cn.Subscriptions) != 1 ||
		cn.Subscriptions[0].Destination != "/queue/ctl-watched" || cn.Subscriptions[0].Ack != "client-individual" {
		t.Fatalf("connection %+v, want anonymous over tcp subscribed to /queue/ctl-watched (client-individual)", cn)
	}

	var queues struct {
		Items []struct {
			Name     string `json:"name"`
			Kind     string `json:"kind"`
			Messages int    `json:"messages"`
		} `json:"items"`
	}
	ctlJSON(t, b, reader, &queues, "queues", "-q", "ctl-depth")
	if len(queues.Items) != 1 || queues.Items[0].Name != "/queue/ctl-depth" || queues.Items[0].Kind != "queue" || queues.Items[0].Messages != 3 {
		t.Fatalf("queues %+v, want /queue/ctl-depth with 3 messages", queues)
	}
	var peek struct {
		Items []struct {
			Body string `json:"body"`
		} `json:"items"`
	}
	ctlJSON(t, b, reader, &peek, "peek", "-n", "2", "/queue/ctl-depth")
	if len(peek.Items) != 2 || peek.Items[0].Body != "message a" || peek.Items[1].Body != "message b" {
		t.Fatalf("peek %+v, want the first two bodies in order", peek)
	}

	if out, errOut, code := ctlRun(t, b, reader, "purge", "/queue/ctl-depth"); code != 1 || !strings.Contains(out+errOut, "403") {
		t.Fatalf("purge with the read token: exit %d, %q %q; want 1 and 403", code, out, errOut)
	}
	if out, errOut, code := ctlRun(t, b, "not-the-token", "queues"); code != 1 || !strings.Contains(out+errOut, "401") {
		t.Fatalf("a wrong token: exit %d, %q %q; want 1 and 401", code, out, errOut)
	}
	var purged struct {
		Purged int `json:"purged"`
	}
	ctlJSON(t, b, admin, &purged, "purge", "/queue/ctl-depth")
	if purged.Purged != 3 {
		t.Fatalf("purged %d, want 3", purged.Purged)
	}
	// An empty queue without consumers is retired: listed empty or not
	// at all.
	queues.Items = nil
	ctlJSON(t, b, reader, &queues, "queues", "-q", "ctl-depth")
	if len(queues.Items) > 1 || len(queues.Items) == 1 && queues.Items[0].Messages != 0 {
		t.Fatalf("after purge: %+v, want /queue/ctl-depth empty or gone", queues)
	}

	if out, errOut, code := ctlRun(t, b, admin, "close", cn.ID, "moving", "to", "node", "b"); code != 0 {
		t.Fatalf("close: exit %d: %s%s", code, out, errOut)
	}
	select {
	case m := <-sub.C:
		if m == nil || m.Err == nil || !strings.Contains(m.Err.Error(), "closed by an operator: moving to node b") {
			t.Fatalf("after the close the subscription got %+v, want the ERROR with the reason", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client heard nothing of its close")
	}
}
