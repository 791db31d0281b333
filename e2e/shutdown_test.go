//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestGracefulShutdownKeepsReceiptedMessages: SIGTERM with clients
// connected tells each of them (ERROR server-shutdown, WebSocket close
// 1012 and reconnect-after), exits 0 within the deadline, and every receipted persistent message
// is there after a restart on the same journal.
func TestGracefulShutdownKeepsReceiptedMessages(t *testing.T) {
	const messages = 500
	dir := t.TempDir()
	b := startBroker(t, "-journal-dir", dir, "-shutdown-timeout", "5s")

	producer, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range messages {
		if err := producer.Send("/queue/shutdown", "text/plain", []byte(fmt.Sprint("m", i)),
			stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}

	// A WebSocket client stays connected through the shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wsConn, _, _, err := ws.Dialer{Protocols: []string{"v12.stomp"}}.Dial(ctx, "ws://"+b.httpAddr+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer wsConn.Close()
	if err := wsutil.WriteClientText(wsConn, []byte("CONNECT\naccept-version:1.2\nhost:h\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	_ = wsConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if data, _, err := wsutil.ReadServerData(wsConn); err != nil || string(data[:10]) != "CONNECTED\n" {
		t.Fatalf("CONNECTED: %q %v", data, err)
	}

	b.stop() // SIGTERM; requires exit status 0 within the deadline
	data, _, err := wsutil.ReadServerData(wsConn)
	if err != nil || !containsAll(string(data), "ERROR\n", "error-code:server-shutdown", "retryable:true", "reconnect-after:") {
		t.Fatalf("WebSocket client got %q (%v), want ERROR server-shutdown", data, err)
	}
	// Read the close frame as it is: wsutil refuses 1012 as "not defined
	// in spec" (gobwas/ws predates its registration), browsers take it.
	f, err := ws.ReadFrame(wsConn)
	if err != nil || f.Header.OpCode != ws.OpClose || len(f.Payload) < 2 || binary.BigEndian.Uint16(f.Payload) != 1012 {
		t.Fatalf("after the ERROR: %v %q (%v), want close 1012 (service restart)", f.Header.OpCode, f.Payload, err)
	}
	_ = producer.Disconnect()

	b2 := startBroker(t, "-journal-dir", dir)
	defer b2.stop()
	consumer, err := stomp.Dial("tcp", b2.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.MustDisconnect()
	sub, err := consumer.Subscribe("/queue/shutdown", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	for i := range messages {
		select {
		case m := <-sub.C:
			if m.Err != nil || string(m.Body) != fmt.Sprint("m", i) {
				t.Fatalf("message %d after restart: %q %v", i, m.Body, m.Err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d receipted messages after restart", i, messages)
		}
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
