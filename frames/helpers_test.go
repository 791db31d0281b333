package frames

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// got is a parsed frame in comparable form.
type got struct {
	cmd     Command
	headers string // "k:v|k:v" after unescaping, in wire order
	body    string
}

func (g got) String() string { return fmt.Sprintf("%s{%s}%q", g.cmd, g.headers, g.body) }

func gotOf(f *Frame) got {
	var hs []string
	for _, h := range f.Headers {
		hs = append(hs, string(h.Key)+":"+string(h.Value))
	}
	return got{cmd: f.Command, headers: strings.Join(hs, "|"), body: string(f.Body)}
}

// event is a frame or, with heartbeat set, one heart-beat EOL.
type event struct {
	heartbeat bool
	frame     got
}

func (e event) String() string {
	if e.heartbeat {
		return "♥"
	}
	return e.frame.String()
}

// recorder is a Handler that keeps what it is given; it copies because the
// frame is borrowed.
type recorder struct {
	events []event
	// onFrame, if set, runs inside HandleFrame (e.g. to switch versions).
	onFrame func(f *Frame) error
}

func (r *recorder) HandleFrame(f *Frame) error {
	r.events = append(r.events, event{frame: gotOf(f)})
	if r.onFrame != nil {
		return r.onFrame(f)
	}
	return nil
}

func (r *recorder) HandleHeartbeat() error {
	r.events = append(r.events, event{heartbeat: true})
	return nil
}

// feeding is one way of cutting an input into chunks.
type feeding struct {
	name   string
	chunks func(in []byte) [][]byte
}

// feedings returns: whole, one byte at a time, and split in two at every
// offset. Each chunk is a fresh copy because Parse decodes in place.
func feedings(n int) []feeding {
	fs := []feeding{
		{"whole", func(in []byte) [][]byte { return [][]byte{clone(in)} }},
		{"bytewise", func(in []byte) [][]byte {
			var cs [][]byte
			for i := range in {
				cs = append(cs, clone(in[i:i+1]))
			}
			return cs
		}},
	}
	for at := 1; at < n; at++ {
		fs = append(fs, feeding{fmt.Sprintf("split@%d", at), func(in []byte) [][]byte {
			return [][]byte{clone(in[:at]), clone(in[at:])}
		}})
	}
	return fs
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// parseAll feeds chunks to a fresh parser and returns what it saw and the
// first error.
func parseAll(v Version, limits Limits, chunks [][]byte) ([]event, *Parser, error) {
	p := NewParser(limits)
	p.SetVersion(v)
	r := &recorder{}
	for _, c := range chunks {
		if err := p.Parse(c, r); err != nil {
			return r.events, p, err
		}
	}
	return r.events, p, nil
}

func eventsEqual(t *testing.T, label string, have, want []event) {
	t.Helper()
	if fmt.Sprint(have) != fmt.Sprint(want) {
		t.Fatalf("%s:\n have %v\n want %v", label, have, want)
	}
}

func frameEvent(cmd Command, headers, body string) event {
	return event{frame: got{cmd: cmd, headers: headers, body: body}}
}

var heartbeat = event{heartbeat: true}

func wantErrIs(t *testing.T, label string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", label, err, want)
	}
}
