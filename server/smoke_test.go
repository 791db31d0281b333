package server

import (
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// The whole path once: go-stomp client, CONNECT, SUBSCRIBE with client
// acks, SEND with receipt, MESSAGE, ACK, DISCONNECT with receipt.
func TestSmokeGoStomp(t *testing.T) {
	srv := startServer(t, Config{})
	c, err := stomp.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe("/queue/a", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send("/queue/a", "text/plain", []byte("hello"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != "hello" || m.Destination != "/queue/a" || m.ContentType != "text/plain" {
			t.Fatalf("got %+v", m)
		}
		if err := c.Ack(m); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
}
