package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/stompbox/stompbox/broker"
)

// vectoredBodies are the bodies of TestOutputVectoredFanoutOnTheWire: on
// both sides of broker.MinBorrowedBody, text and binary (NULs, bytes that
// are not UTF-8), small and large.
func vectoredBodies() []string {
	return []string{
		"hello",
		strings.Repeat("\x00\xfe", 32<<10), // 64 KiB, binary
		strings.Repeat("é", 8<<10),         // 16 KiB, text
		strings.Repeat("a", broker.MinBorrowedBody-1),
		strings.Repeat("b", broker.MinBorrowedBody),
		"\xff",
	}
}

// wantMessage is a MESSAGE as the writer encoded it before vectored
// writes: subscription, message-id, the message's headers (destination
// first), content-length, the body, the NUL.
func wantMessage(id, body string) string {
	return "MESSAGE\nsubscription:s\nmessage-id:" + id + "\ndestination:/topic/v\ncontent-type:application/octet-stream\n" +
		"content-length:" + strconv.Itoa(len(body)) + "\n\n" + body + "\x00"
}

// Topic deliveries with bodies large and small, to many subscribers over
// native STOMP and WebSocket at once, arrive whole, in order and byte for
// byte as the copying writer encoded them; each WebSocket message is
// exactly one of those frames, text when it is valid UTF-8. One TCP
// subscriber reads slowly through a small receive buffer, so the server's
// vectored writes to it are partial over and over.
func TestOutputVectoredFanoutOnTheWire(t *testing.T) {
	const rounds, perTransport = 3, 6
	srv, url := startWebServer(t, Config{MaxConnectionsPerIP: -1, ConnectionRatePerIP: -1})
	subscribe := "SUBSCRIBE\nid:s\ndestination:/topic/v\nreceipt:r\n\n\x00"

	type result struct {
		frames [][]byte
		ops    []ws.OpCode // WebSocket only
		err    error
	}
	bodies := vectoredBodies()
	want := rounds * len(bodies)
	results := make(chan result, 2*perTransport+1)
	for i := range perTransport + 1 {
		conn, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		slow := i == perTransport
		if slow {
			if err := conn.(*net.TCPConn).SetReadBuffer(8 << 10); err != nil {
				t.Fatal(err)
			}
		}
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(conn)
		if slow {
			br = bufio.NewReaderSize(&slowConnReader{r: conn, chunk: 2 << 10}, 4<<10)
		}
		if _, err := conn.Write([]byte("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\x00" + subscribe)); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"CONNECTED\n", "RECEIPT\n"} {
			if f, err := readRawFrame(br); err != nil || !bytes.HasPrefix(f, []byte(cmd)) {
				t.Fatalf("got %q, %v; want %s", f, err, cmd)
			}
		}
		go func() {
			var r result
			for range want {
				f, err := readRawFrame(br)
				if err != nil {
					r.err = err
					break
				}
				r.frames = append(r.frames, f)
			}
			results <- r
		}()
	}
	for range perTransport {
		conn, _ := dialWS(t, url, "v12.stomp")
		if err := wsutil.WriteClientText(conn, []byte("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\x00"+subscribe)); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"CONNECTED\n", "RECEIPT\n"} {
			if data, _ := readWS(t, conn); !bytes.HasPrefix(data, []byte(cmd)) {
				t.Fatalf("got %q, want %s", data, cmd)
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		go func() {
			var r result
			for range want {
				data, op, err := wsutil.ReadServerData(conn)
				if err != nil {
					r.err = err
					break
				}
				r.frames, r.ops = append(r.frames, data), append(r.ops, op)
			}
			results <- r
		}()
	}

	pub := dialRaw(t, srv.addr)
	pub.connect()
	for range rounds {
		for _, body := range bodies {
			pub.send(frame("SEND", body, "destination:/topic/v", "content-type:application/octet-stream",
				"content-length:"+strconv.Itoa(len(body))))
		}
	}

	var reference [][]byte // the first TCP subscriber's frames, checked against wantMessage
	var wsResults []result
	for range 2*perTransport + 1 {
		r := <-results
		if r.err != nil {
			t.Fatalf("a subscriber stopped after %d frames: %v", len(r.frames), r.err)
		}
		if r.ops != nil {
			wsResults = append(wsResults, r)
			continue
		}
		if reference == nil {
			reference = r.frames
			for i, f := range reference {
				id := messageID(f)
				if w := wantMessage(id, bodies[i%len(bodies)]); string(f) != w {
					t.Fatalf("frame %d: %d bytes differ from the %d expected:\n%.200q", i, len(f), len(w), f)
				}
			}
			continue
		}
		for i, f := range r.frames {
			if !bytes.Equal(f, reference[i]) {
				t.Fatalf("TCP subscriber: frame %d differs from another subscriber's", i)
			}
		}
	}
	if reference == nil {
		t.Fatal("no TCP subscriber finished")
	}
	for _, r := range wsResults {
		for i, f := range r.frames {
			wantOp := ws.OpBinary
			if utf8.Valid(reference[i]) {
				wantOp = ws.OpText
			}
			if !bytes.Equal(f, reference[i]) || r.ops[i] != wantOp {
				t.Fatalf("WebSocket message %d: %v of %d bytes; want %v, the TCP frame of %d bytes", i, r.ops[i], len(f), wantOp, len(reference[i]))
			}
		}
	}
}

// slowConnReader reads at most chunk bytes at a time, pausing first.
type slowConnReader struct {
	r     io.Reader
	chunk int
}

func (s *slowConnReader) Read(p []byte) (int, error) {
	time.Sleep(50 * time.Microsecond)
	return s.r.Read(p[:min(len(p), s.chunk)])
}

// readRawFrame reads one STOMP frame's exact bytes: up to the blank line,
// then content-length bytes and the NUL (or, without content-length, up to
// the NUL).
func readRawFrame(br *bufio.Reader) ([]byte, error) {
	var raw []byte
	length := -1
	for {
		line, err := br.ReadBytes('\n')
		raw = append(raw, line...)
		if err != nil {
			return raw, err
		}
		if len(line) == 1 {
			if len(raw) == 1 {
				raw = raw[:0] // a heart-beat before the frame
				continue
			}
			break
		}
		if v, ok := strings.CutPrefix(string(line), "content-length:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(v, "\n"))
			if err != nil {
				return raw, fmt.Errorf("content-length %q: %w", v, err)
			}
			length = n
		}
	}
	if length < 0 {
		rest, err := br.ReadBytes(0)
		return append(raw, rest...), err
	}
	start := len(raw)
	raw = append(raw, make([]byte, length+1)...)
	if _, err := io.ReadFull(br, raw[start:]); err != nil {
		return raw, err
	}
	if raw[len(raw)-1] != 0 {
		return raw, errors.New("frame not ended by a NUL after content-length bytes")
	}
	return raw, nil
}

// messageID returns the message-id header of a raw MESSAGE frame.
func messageID(f []byte) string {
	_, rest, _ := bytes.Cut(f, []byte("\nmessage-id:"))
	id, _, _ := bytes.Cut(rest, []byte("\n"))
	return string(id)
}

// Over TLS (native and WSS) nothing is written as a vector: the batch is
// flattened, and large bodies arrive exactly as over plain TCP.
func TestOutputVectoredOverTLS(t *testing.T) {
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	stompAddr, wssURL, _ := startTLSServer(t, cert, Config{})
	subscribe := "CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\x00SUBSCRIBE\nid:s\ndestination:/topic/v\nreceipt:r\n\n\x00"

	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", stompAddr, &tls.Config{RootCAs: tc.pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte(subscribe)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	for _, cmd := range []string{"CONNECTED\n", "RECEIPT\n"} {
		if f, err := readRawFrame(br); err != nil || !bytes.HasPrefix(f, []byte(cmd)) {
			t.Fatalf("got %q, %v; want %s", f, err, cmd)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wsc, _, _, err := ws.Dialer{Protocols: []string{"v12.stomp"}, TLSConfig: &tls.Config{RootCAs: tc.pool}}.Dial(ctx, wssURL)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	t.Cleanup(func() { _ = wsc.Close() })
	if err := wsutil.WriteClientText(wsc, []byte(subscribe)); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"CONNECTED\n", "RECEIPT\n"} {
		if data, _ := readWS(t, wsc); !bytes.HasPrefix(data, []byte(cmd)) {
			t.Fatalf("got %q, want %s", data, cmd)
		}
	}

	pub := dialTLSRaw(t, stompAddr, tc.pool)
	bodies := vectoredBodies()
	for _, body := range bodies {
		if _, err := pub.Write([]byte(frame("SEND", body, "destination:/topic/v", "content-type:application/octet-stream",
			"content-length:"+strconv.Itoa(len(body))))); err != nil {
			t.Fatal(err)
		}
	}
	for i, body := range bodies {
		f, err := readRawFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if w := wantMessage(messageID(f), body); string(f) != w {
			t.Fatalf("TLS frame %d: %d bytes differ from the %d expected", i, len(f), len(w))
		}
		data, op := readWS(t, wsc)
		wantOp := ws.OpBinary
		if utf8.Valid(f) {
			wantOp = ws.OpText
		}
		if !bytes.Equal(data, f) || op != wantOp {
			t.Fatalf("WSS message %d: %v of %d bytes; want %v, the TLS frame of %d bytes", i, op, len(data), wantOp, len(f))
		}
	}
}

// dialTLSRaw connects over TLS and sends CONNECT; CONNECTED is read.
func dialTLSRaw(t *testing.T, addr string, pool *x509.CertPool) net.Conn {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte("CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	if f, err := readRawFrame(bufio.NewReader(nc)); err != nil || !bytes.HasPrefix(f, []byte("CONNECTED\n")) {
		t.Fatalf("got %q, %v; want CONNECTED", f, err)
	}
	return nc
}
