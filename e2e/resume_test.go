//go:build e2e

package e2e

import (
	"net"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/frames"
)

// resumeFrames collects the frames a raw connection receives.
type resumeFrames struct{ got chan *frames.Frame }

func (h resumeFrames) HandleFrame(f *frames.Frame) error {
	h.got <- f.Clone()
	return nil
}

func (resumeFrames) HandleHeartbeat() error { return nil }

// resumeDial connects to addr, sends CONNECT with extra header lines
// and returns the connection and its frames (CONNECTED first).
func resumeDial(t *testing.T, addr string, headers string) (net.Conn, <-chan *frames.Frame) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	h := resumeFrames{got: make(chan *frames.Frame, 64)}
	go func() {
		p := frames.NewParser(frames.Limits{})
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if n > 0 && p.Parse(buf[:n], h) != nil {
				return
			}
			if err != nil {
				return
			}
		}
	}()
	if _, err := conn.Write([]byte("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n" + headers + "\n\x00")); err != nil {
		t.Fatal(err)
	}
	return conn, h.got
}

func resumeNext(t *testing.T, got <-chan *frames.Frame) *frames.Frame {
	t.Helper()
	select {
	case f := <-got:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no frame within 10s")
		return nil
	}
}

func resumeHeader(f *frames.Frame, key string) string {
	v, _ := f.Header(key)
	return string(v)
}

// TestResumeRealBinary: the real binary with -session-resume-grace
// announces the grace in CONNECTED, parks a dropped session, and gives it
// back, with what arrived meanwhile, to a CONNECT presenting its token.
func TestResumeRealBinary(t *testing.T) {
	b := startBroker(t, "-session-resume-grace", "30s")
	defer b.stop()
	conn, got := resumeDial(t, b.addr, "")
	f := resumeNext(t, got)
	token := resumeHeader(f, "resume-token")
	if f.Command != frames.CmdConnected || token == "" || resumeHeader(f, "resume-grace") != "30000" {
		t.Fatalf("CONNECTED %v: want a resume-token and resume-grace:30000", f.Headers)
	}
	if _, err := conn.Write([]byte("SUBSCRIBE\nid:s\ndestination:/topic/e2e.resume\nreceipt:r\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	if f := resumeNext(t, got); f.Command != frames.CmdReceipt {
		t.Fatalf("got %s, want RECEIPT", f.Command)
	}
	_ = conn.Close()
	// Publish only once the session is parked: until the broker sees the
	// drop, the writer may write to the dead socket what it is sent.
	waitHostileMetric(t, listenAttr(t, b, "admin"), "stompbox_sessions_parked", 1, 10*time.Second)
	pub, err := stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"one", "two"} {
		if err := pub.Send("/topic/e2e.resume", "text/plain", []byte(body), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	_ = pub.Disconnect()
	_, got = resumeDial(t, b.addr, "resume-token:"+token+"\n")
	if f := resumeNext(t, got); resumeHeader(f, "resumed") != "true" {
		t.Fatalf("CONNECTED %v, want resumed:true", f.Headers)
	}
	for _, want := range []string{"one", "two"} {
		if f := resumeNext(t, got); f.Command != frames.CmdMessage || string(f.Body) != want || resumeHeader(f, "subscription") != "s" {
			t.Fatalf("got %s %q %v, want MESSAGE %q on s", f.Command, f.Body, f.Headers, want)
		}
	}
}
