package broker

import (
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// FuzzConnect feeds arbitrary bytes as the first thing a client sends,
// against a broker with authentication, authorization and virtual hosts.
// Whatever arrives, the session never panics, answers with CONNECTED or an
// ERROR (or waits for more bytes), and is connected only for a CONNECT
// that carried alice's credentials and named an allowed virtual host.
func FuzzConnect(f *testing.F) {
	for _, seed := range []string{
		"CONNECT\naccept-version:1.2\nhost:/\nlogin:alice\npasscode:secret\n\n\x00",
		"STOMP\naccept-version:1.2\nhost:tenant\nlogin:alice\npasscode:secret\n\n\x00",
		"CONNECT\naccept-version:1.2\nhost:other\nlogin:alice\npasscode:secret\n\n\x00",
		"CONNECT\naccept-version:1.2\nlogin:alice\npasscode:guess\n\n\x00",
		"CONNECT\naccept-version:1.2\nlogin:down\n\n\x00",
		"CONNECT\nlogin:al\\cice\npasscode:secret\n\n\x00",
		"CONNECT\naccept-version:9.9\n\n\x00",
		"SEND\ndestination:/queue/a\n\nx\x00",
		"CONNECT\naccept-version:1.2\nheart-beat:x,y\nlogin:alice\npasscode:secret\n\n\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := New(Config{Authenticator: tableAuth{}, AuthFailureDelay: -1, VirtualHosts: []string{"tenant"},
			Authorizer: prefixAuthorizer{hosts: []string{"/", "tenant"}, publish: []string{"/"}, subscribe: []string{"/"}}})
		c := newClient(t, b)
		err := c.s.Feed(append([]byte(nil), data...))
		out, _ := c.s.AppendOutput(nil)
		p := frames.NewParser(frames.Limits{MaxBody: 1 << 20})
		var got []*frames.Frame
		h := &collect{frames: &got}
		if perr := p.Parse(out, h); perr != nil {
			t.Fatalf("server output does not parse: %v\n%q", perr, out)
		}
		connected := c.s.state == stateConnected
		if connected {
			if c.s.principal.Name != "alice" || !strings.Contains(string(data), "passcode:secret") {
				t.Fatalf("connected as %q from %q", c.s.principal.Name, data)
			}
			if name := c.s.space.name; name != "/" && name != "tenant" {
				t.Fatalf("connected to virtual host %q", name)
			}
		}
		if len(got) > 0 && got[0].Command == frames.CmdConnected && !connected {
			t.Fatalf("CONNECTED sent but the session is %v", c.s.state)
		}
		if err != nil && len(got) > 0 && got[len(got)-1].Command != frames.CmdError && got[len(got)-1].Command != frames.CmdReceipt {
			t.Fatalf("session ended (%v) without an ERROR: %v", err, commands(got))
		}
		c.s.Release()
	})
}

type collect struct{ frames *[]*frames.Frame }

func (c *collect) HandleFrame(f *frames.Frame) error {
	*c.frames = append(*c.frames, f.Clone())
	return nil
}

func (c *collect) HandleHeartbeat() error { return nil }
