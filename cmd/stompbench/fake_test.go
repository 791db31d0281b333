package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// fakeBroker is a tiny STOMP server that routes each SEND to its
// subscribers round-robin, as a queue does, except that it can drop or
// repeat one message: the checker must notice.
type fakeBroker struct {
	t      *testing.T
	ln     net.Listener
	drop   int64 // seq of producer 0 never delivered (-1: none)
	repeat int64 // seq of producer 0 delivered twice (-1: none)

	mu   sync.Mutex
	subs []*fakeConn // guarded by mu
	next int         // guarded by mu: round-robin position
	wg   sync.WaitGroup
}

type fakeConn struct {
	mu sync.Mutex // serialises writes
	nc net.Conn
}

func (c *fakeConn) write(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.nc.Write(b)
}

// startFake starts a fake broker on a loopback port, stopped at cleanup.
func startFake(t *testing.T, drop, repeat int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBroker{t: t, ln: ln, drop: drop, repeat: repeat}
	conns := make(map[net.Conn]struct{})
	var connsMu sync.Mutex
	f.wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns[nc] = struct{}{}
			connsMu.Unlock()
			f.wg.Go(func() { f.serve(&fakeConn{nc: nc}) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		connsMu.Lock()
		for nc := range conns {
			_ = nc.Close()
		}
		connsMu.Unlock()
		f.wg.Wait()
	})
	return "stomp://" + ln.Addr().String()
}

// fakeHandler answers one connection's frames.
type fakeHandler struct {
	f *fakeBroker
	c *fakeConn
	n int // messages routed, for message-id
}

func (f *fakeBroker) serve(c *fakeConn) {
	defer c.nc.Close()
	p := frames.NewParser(frames.Limits{})
	h := &fakeHandler{f: f, c: c}
	buf := make([]byte, 32<<10)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			if perr := p.Parse(buf[:n], h); perr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (h *fakeHandler) HandleHeartbeat() error { return nil }

func (h *fakeHandler) HandleFrame(fr *frames.Frame) error {
	receipt, hasReceipt := fr.Header("receipt")
	switch fr.Command {
	case frames.CmdConnect, frames.CmdStomp:
		h.c.write([]byte("CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\x00"))
	case frames.CmdSubscribe:
		h.f.mu.Lock()
		h.f.subs = append(h.f.subs, h.c)
		h.f.mu.Unlock()
	case frames.CmdSend:
		h.route(fr)
	case frames.CmdDisconnect:
		h.c.write([]byte("RECEIPT\nreceipt-id:" + string(receipt) + "\n\n\x00"))
		return errors.New("disconnected")
	}
	if hasReceipt && fr.Command != frames.CmdDisconnect {
		h.c.write([]byte("RECEIPT\nreceipt-id:" + string(receipt) + "\n\n\x00"))
	}
	return nil
}

// route delivers one SEND as a MESSAGE to the next subscriber.
func (h *fakeHandler) route(fr *frames.Frame) {
	seqV, _ := fr.Header(hdrSeq)
	prodV, _ := fr.Header(hdrProducer)
	seq, _ := strconv.ParseInt(string(seqV), 10, 64)
	times := 1
	if string(prodV) == "0" {
		switch seq {
		case h.f.drop:
			times = 0
		case h.f.repeat:
			times = 2
		}
	}
	h.f.mu.Lock()
	if len(h.f.subs) == 0 {
		h.f.mu.Unlock()
		h.f.t.Error("SEND before any SUBSCRIBE")
		return
	}
	sub := h.f.subs[h.f.next%len(h.f.subs)]
	h.f.next++
	h.f.mu.Unlock()
	h.n++
	msg := frames.Frame{Command: frames.CmdMessage, Body: fr.Body}
	msg.Headers = append(msg.Headers, fr.Headers...)
	id := []byte(strconv.Itoa(h.n))
	msg.Headers = append(msg.Headers,
		frames.Header{Key: []byte("subscription"), Value: []byte("0")},
		frames.Header{Key: []byte("message-id"), Value: id},
		frames.Header{Key: []byte("ack"), Value: id})
	wire := frames.AppendFrame(nil, frames.V12, &msg)
	for range times {
		sub.write(wire)
	}
}

func TestCheckerCatchesLoss(t *testing.T) {
	url := startFake(t, 10, -1)
	res, err := Run(t.Context(), config(t, "-url", url, "-messages", "50"))
	if !errors.Is(err, errLost) || !strings.Contains(err.Error(), "seq 10 missing") {
		t.Fatalf("run returned %v, want message loss naming seq 10", err)
	}
	if res.OK {
		t.Error("Result says ok")
	}
}

func TestCheckerCatchesDuplicate(t *testing.T) {
	url := startFake(t, -1, 10)
	res, err := Run(t.Context(), config(t, "-url", url, "-messages", "50"))
	if !errors.Is(err, errDuplicate) || !strings.Contains(err.Error(), "producer 0 seq 10 delivered twice") {
		t.Fatalf("run returned %v, want a duplicate naming seq 10", err)
	}
	if res.OK {
		t.Error("Result says ok")
	}
}

// With two consumers sharing a queue a gap is normal for each of them:
// the loss shows when the run times out with a message missing, and the
// JSON output says so with the counts.
func TestCheckerCatchesLossAcrossConsumers(t *testing.T) {
	url := startFake(t, 7, -1)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(t.Context(), []string{"-url", url, "-consumers", "2", "-messages", "40", "-timeout", "1s", "-json"}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit status %d, want 1 (stderr %q)", code, stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a run bounded by -timeout 1s took %v", d)
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	if res.OK || res.Counts.Sent != 40 || res.Counts.Received != 39 || res.Counts.Lost != 1 {
		t.Errorf("ok=%v counts %+v, want sent 40, received 39, lost 1", res.OK, res.Counts)
	}
	if len(res.Errors) == 0 || !strings.Contains(res.Errors[0], "first: producer 0 seq 7") {
		t.Errorf("errors %q, want the missing message named", res.Errors)
	}
}
