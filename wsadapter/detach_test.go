package wsadapter

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Read runs the same decoder over whatever the socket delivers: a wire
// written in any chunks (a net.Pipe hands each write to the reader as is,
// so the header and payload cuts really happen) reads as the same STOMP
// bytes, with the pongs and the close echo written back.
func TestReadAnyChunking(t *testing.T) {
	tc := feedCases[0] // fragments, pings and pongs between them, then close
	wire := bytes.Join(tc.wire, nil)
	for name, cuts := range cutsOf(len(wire)) {
		srv, cli := net.Pipe()
		wrote := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(cli)
			wrote <- b
		}()
		sent := make(chan struct{})
		go func() { // a write fails once the Conn stops reading at the close
			defer close(sent)
			start := 0
			for _, end := range append(cuts, len(wire)) {
				if _, err := cli.Write(wire[start:end]); err != nil {
					return
				}
				start = end
			}
		}()
		c := newConn(srv, bufio.NewReader(srv), 1<<20, nil)
		var got []byte
		var err error
		buf := make([]byte, 64)
		for range 2 * len(wire) { // each Read takes at least one byte off the pipe
			var n int
			n, err = c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		_ = srv.Close()
		<-sent
		frames := frameList(t, <-wrote)
		_ = cli.Close()
		if string(got) != tc.payload || err != io.EOF || strings.Join(frames, ",") != strings.Join(tc.wrote, ",") {
			t.Fatalf("%s: read %q, %v, wrote %q; want %q, EOF, %q", name, got, err, frames, tc.payload, tc.wrote)
		}
	}
}

// A read deadline may cut a Read anywhere, inside a frame header or a
// control frame's payload: the decoder keeps what it has, and the next
// Read goes on from there.
func TestReadResumesAfterDeadline(t *testing.T) {
	wire := bytes.Join([][]byte{
		clientFrame(ws.OpPing, true, []byte("ping")), // 6 header bytes, 4 of payload
		clientFrame(ws.OpText, true, []byte("SEND")),
	}, nil)
	for _, cut := range []int{1, 3, 7, 12} { // in the ping's header and payload, in the text's header
		srv, cli := net.Pipe()
		wrote := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(cli)
			wrote <- b
		}()
		c := newConn(srv, bufio.NewReader(srv), 1<<20, nil)
		buf := make([]byte, 64)
		var got []byte
		readAll := func(chunk []byte) error {
			sent := make(chan error, 1)
			go func() { _, err := cli.Write(chunk); sent <- err }()
			var err error
			for range 4 { // a ping's 0, nil, then a timeout or the payload
				var n int
				n, err = c.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil || len(got) == 4 {
					break
				}
			}
			if werr := <-sent; werr != nil {
				t.Fatal(werr)
			}
			return err
		}
		_ = srv.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if err := readAll(wire[:cut]); !errors.Is(err, os.ErrDeadlineExceeded) || len(got) != 0 {
			t.Fatalf("cut %d: read %q, %v; want nothing and a timeout", cut, got, err)
		}
		_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := readAll(wire[cut:]); err != nil || string(got) != "SEND" {
			t.Fatalf("cut %d: read %q, %v after the timeout; want SEND", cut, got, err)
		}
		_ = srv.Close()
		if frames := frameList(t, <-wrote); len(frames) != 1 || frames[0] != "pong ping" {
			t.Fatalf("cut %d: wrote %q, want one pong for the ping", cut, frames)
		}
		_ = cli.Close()
	}
}

// Detach hands back exactly the bytes the bufio.Reader had read ahead, as
// a copy, and Read refuses to run after it (ErrDetached): the caller reads
// the socket and Feeds.
func TestDetachReturnsReadAhead(t *testing.T) {
	wire := bytes.Join([][]byte{
		clientFrame(ws.OpText, true, []byte("CONNECT\n\n\x00")),
		clientFrame(ws.OpText, false, []byte("SEND")), // cut: the rest comes from the socket
	}, nil)
	rest := clientFrame(ws.OpContinuation, true, []byte("\n\n\x00"))
	br := bufio.NewReader(bytes.NewReader(append(bytes.Clone(wire), rest...)))
	peeked, err := br.Peek(len(wire)) // what net/http had read ahead with the upgrade request
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(nil, br, 1<<20, nil)
	ahead := c.Detach()
	if !bytes.Equal(ahead[:len(wire)], wire) {
		t.Fatalf("Detach returned %q, want the %d bytes read ahead first", ahead, len(wire))
	}
	if &ahead[0] == &peeked[0] {
		t.Fatal("Detach returned the bufio.Reader's own buffer, not a copy")
	}
	if n, err := c.Read(make([]byte, 16)); n != 0 || !errors.Is(err, ErrDetached) {
		t.Fatalf("Read after Detach = %d, %v; want 0, ErrDetached", n, err)
	}
	if again := c.Detach(); again != nil {
		t.Fatalf("second Detach returned %q, want nil", again)
	}
	var got []byte
	stomp := func(p []byte) error { got = append(got, p...); return nil }
	if err := c.Feed(ahead, stomp); err != nil {
		t.Fatal(err)
	}
	if len(ahead) == len(wire) { // the reader had not buffered the rest
		if err := c.Feed(bytes.Clone(rest), stomp); err != nil {
			t.Fatal(err)
		}
	}
	if want := "CONNECT\n\n\x00SEND\n\n\x00"; string(got) != want {
		t.Fatalf("fed %q, want %q", got, want)
	}
}

// Through a real upgrade: a client that sends a frame in the same write
// as its upgrade request finds it decoded after Detach, from the bytes
// net/http read ahead and then from the socket.
func TestDetachAfterUpgrade(t *testing.T) {
	frame := clientFrame(ws.OpText, true, []byte("CONNECT\naccept-version:1.2\n\n\x00"))
	type result struct {
		payload []byte
		readErr error
		err     error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := Upgrade(w, r, Config{})
		if err != nil {
			results <- result{err: err}
			return
		}
		defer c.NetConn().Close()
		var res result
		raw := c.Detach()
		_, res.readErr = c.Read(make([]byte, 16))
		stomp := func(p []byte) error { res.payload = append(res.payload, p...); return nil }
		_ = c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		for range 100 { // bounded: the frame is a few dozen bytes
			if res.err = c.Feed(raw, stomp); res.err != nil || len(res.payload) == len(frame)-6 {
				break
			}
			var n int
			n, res.err = c.NetConn().Read(buf)
			if res.err != nil {
				break
			}
			raw = buf[:n]
		}
		results <- res
	}))
	defer srv.Close()
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET / HTTP/1.1\r\nHost: " + srv.Listener.Addr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), frame...)); err != nil { // one write, one packet on loopback
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-results:
	case <-time.After(5 * time.Second):
		t.Fatal("no result from the handler")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if !errors.Is(res.readErr, ErrDetached) {
		t.Errorf("Read after Detach: %v, want ErrDetached", res.readErr)
	}
	if want := "CONNECT\naccept-version:1.2\n\n\x00"; string(res.payload) != want {
		t.Fatalf("decoded %q, want %q", res.payload, want)
	}
}
