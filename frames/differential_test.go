package frames_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/stompbox/stompbox/frames"
)

// The differential test runs a generated corpus through our Parser and through
// go-stomp's frame.Reader, a widely used implementation, and demands that they
// agree except where we deliberately follow STOMP 1.2 more strictly. Each such
// difference has a name below; any other disagreement is a bug in one of the
// two and fails the test with the input quoted.
const (
	diffUndefinedEscape = `undefined escape: go-stomp passes \t and a lone backslash through, ` +
		`STOMP 1.2 says fatal error, we reject`
	diffSizeLimit = "size limit: a frame fails as soon as it passes Limits, e.g. a content-length over " +
		"MaxBody (STOMP 1.2, Size Limits); go-stomp allocates it and reads on until EOF"
	diffEarlyContentLength = "early content-length check: we reject a bad content-length on its own line; " +
		"go-stomp checks it after the blank line, so a stream cut before that ends in EOF"
)

// knownDiffs are the classes the corpus must hit, so that the test can fail.
var knownDiffs = []string{diffUndefinedEscape, diffSizeLimit, diffEarlyContentLength}

// item is one thing a parser reported, flattened so outcomes compare with ==.
type item struct {
	heartbeat bool
	command   string
	headers   string // "key\x00value\x00" per header, in wire order
	body      string
}

func (it item) String() string {
	if it.heartbeat {
		return "heart-beat"
	}
	return fmt.Sprintf("%s %q body=%q", it.command, it.headers, it.body)
}

// outcome is a whole input's parse. err is nil when the input ran out without
// a protocol error, whether or not a frame was left unfinished.
type outcome struct {
	items    []item
	err      error
	buffered int // ours only: Parser.Buffered() at the end
}

// collector is the Handler that records what our Parser reports.
type collector struct{ items []item }

func (c *collector) HandleFrame(f *frames.Frame) error {
	var hs strings.Builder
	for _, h := range f.Headers {
		hs.WriteString(string(h.Key) + "\x00" + string(h.Value) + "\x00")
	}
	c.items = append(c.items, item{command: f.Command.String(), headers: hs.String(), body: string(f.Body)})
	return nil
}

func (c *collector) HandleHeartbeat() error {
	c.items = append(c.items, item{heartbeat: true})
	return nil
}

// parseOurs feeds input in two Parse calls split at split (len(input): one
// call). Parse unescapes in place, so it works on a private copy.
func parseOurs(input []byte, split int) outcome {
	buf := bytes.Clone(input)
	p := frames.NewParser(frames.Limits{})
	var c collector
	err := p.Parse(buf[:split], &c)
	if err == nil {
		err = p.Parse(buf[split:], &c)
	}
	return outcome{items: c.items, err: err, buffered: p.Buffered()}
}

// parseGoStomp reads until go-stomp reports an error; a nil frame is one
// heart-beat. EOF, clean or mid-frame, counts as "input ran out".
func parseGoStomp(input []byte) outcome {
	r := frame.NewReader(bytes.NewReader(input))
	var out outcome
	for {
		f, err := r.Read()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				out.err = err
			}
			return out
		}
		if f == nil {
			out.items = append(out.items, item{heartbeat: true})
			continue
		}
		var hs strings.Builder
		for i := 0; i < f.Header.Len(); i++ {
			k, v := f.Header.GetAt(i)
			hs.WriteString(k + "\x00" + v + "\x00")
		}
		out.items = append(out.items, item{command: f.Command, headers: hs.String(), body: string(f.Body)})
	}
}

// sentinel names which of our sentinel errors err wraps, so the two feeds of
// one input can be compared without depending on message detail.
func sentinel(err error) error {
	for _, s := range []error{frames.ErrBadEscape, frames.ErrFrameTooLarge, frames.ErrBadContentLength,
		frames.ErrUnknownCommand, frames.ErrMalformedFrame} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// classify names the known difference that explains ours != theirs on in, or
// "". Both parsers must agree on everything before the frame we reject.
func classify(in []byte, ours, theirs outcome) string {
	k := 0
	for k < len(ours.items) && k < len(theirs.items) && ours.items[k] == theirs.items[k] {
		k++
	}
	if ours.err == nil || k != len(ours.items) {
		return ""
	}
	switch {
	case errors.Is(ours.err, frames.ErrBadEscape):
		// go-stomp either returned the frame with the backslash left in a
		// header, or ran out of input before the frame's end.
		if k == len(theirs.items) && theirs.err == nil {
			return diffUndefinedEscape
		}
		if k < len(theirs.items) && strings.Contains(theirs.items[k].headers, `\`) {
			return diffUndefinedEscape
		}
	case errors.Is(ours.err, frames.ErrFrameTooLarge):
		if k == len(theirs.items) && theirs.err == nil {
			return diffSizeLimit
		}
	case errors.Is(ours.err, frames.ErrBadContentLength):
		// Only a matter of timing if go-stomp rejects the frame too once its
		// header block is complete.
		completed := parseGoStomp(append(bytes.Clone(in), "\n\n"...))
		if k == len(theirs.items) && theirs.err == nil && completed.err != nil {
			return diffEarlyContentLength
		}
	}
	return ""
}

// The generator. Header lines are wire text; the parsers decide what they mean.
var (
	commands = []string{"SEND", "SUBSCRIBE", "UNSUBSCRIBE", "MESSAGE", "ACK", "NACK",
		"BEGIN", "COMMIT", "ABORT", "DISCONNECT", "RECEIPT", "ERROR"}
	goodHeaders = []string{
		"destination:/queue/a",
		"content-type:text/plain;charset=utf-8",
		"receipt:77",
		`x-esc:line1\nline2`,        // the 1.2 escapes \n, \c, \\ and \r
		`x-esc:a\cb\\c\rd`,          // all decode alike in both
		`k\cey:v`,                   // an escaped colon in a key
		"x-raw:a:b:c",               // raw colons in a value: only the first splits
		"x-dup:first", "x-dup:last", // repeats: both kept in order (readers take the first)
		"x-empty:",
		"x-space: padded ",
		"x-raw-cr:a\rb", // a CR not before the LF is an ordinary byte
	}
	badHeaders = []string{
		`x-tab:a\tb`,         // undefined escape
		`x-lone:ab\`,         // lone trailing backslash
		`x-lone\:v`,          // undefined escape "\:" in a key
		"no-colon-here",      // missing colon
		":empty-key",         // empty key
		"content-length:-1",  // not a non-negative integer
		"content-length:0x1", // nor is a hex number
	}
	mutationBytes = []byte{':', '\\', '\n', '\r', 0, 'c', 't', '0', '9'}
)

// genFrame appends one frame. bad allows malformed headers and lengths.
func genFrame(r *rand.Rand, dst []byte, bad bool) []byte {
	eol := "\n"
	if r.IntN(3) == 0 {
		eol = "\r\n"
	}
	var lines []string
	for range r.IntN(6) {
		if bad && r.IntN(12) == 0 {
			lines = append(lines, badHeaders[r.IntN(len(badHeaders))])
		} else {
			lines = append(lines, goodHeaders[r.IntN(len(goodHeaders))])
		}
	}
	body := make([]byte, r.IntN(48))
	for i := range body {
		body[i] = byte(r.IntN(256))
	}
	switch mode := r.IntN(100); {
	case mode < 45: // no content-length: the body ends at the first NUL
		body = bytes.ReplaceAll(body, []byte{0}, []byte{'0'})
	case bad && mode < 52: // wrong content-length
		lines = insertLine(r, lines, fmt.Sprintf("content-length:%d", max(0, len(body)+r.IntN(7)-3)))
	case bad && mode < 53: // over our MaxBody but a valid uint32 for go-stomp
		lines = insertLine(r, lines, fmt.Sprintf("content-length:%d", frames.DefaultMaxBody+1))
	default: // correct content-length: the body may hold NULs
		lines = insertLine(r, lines, fmt.Sprintf("content-length:%d", len(body)))
		if r.IntN(8) == 0 { // a later, different content-length must be ignored
			lines = append(lines, fmt.Sprintf("content-length:%d", len(body)+1))
		}
	}
	dst = append(dst, commands[r.IntN(len(commands))]+eol...)
	for _, l := range lines {
		dst = append(dst, l+eol...)
	}
	dst = append(dst, eol...)
	dst = append(dst, body...)
	return append(dst, 0)
}

func insertLine(r *rand.Rand, lines []string, l string) []string {
	i := r.IntN(len(lines) + 1)
	return append(lines[:i], append([]string{l}, lines[i:]...)...)
}

func appendHeartbeats(r *rand.Rand, dst []byte) []byte {
	for range r.IntN(3) {
		dst = append(dst, []string{"\n", "\r\n"}[r.IntN(2)]...)
	}
	return dst
}

// genInput returns 1-4 frames with heart-beats around them; a quarter of the
// inputs are byte-level mutations of well-formed streams, and a tenth are
// cut short.
func genInput(r *rand.Rand) (in []byte, mutated bool) {
	mutate := r.IntN(4) == 0
	in = appendHeartbeats(r, nil)
	for range 1 + r.IntN(4) {
		in = genFrame(r, in, !mutate)
		in = appendHeartbeats(r, in)
	}
	if mutate {
		for range 1 + r.IntN(3) {
			i := r.IntN(len(in))
			switch r.IntN(3) {
			case 0:
				in[i] = mutationBytes[r.IntN(len(mutationBytes))]
			case 1:
				in = append(in[:i], in[i+1:]...)
			case 2:
				in = append(in[:i], append([]byte{mutationBytes[r.IntN(len(mutationBytes))]}, in[i:]...)...)
			}
		}
	}
	if r.IntN(10) == 0 {
		in = in[:r.IntN(len(in))]
	}
	return in, mutate
}

func TestDifferentialGoStomp(t *testing.T) {
	const inputs = 6000
	r := rand.New(rand.NewPCG(0x5707, 0xb0c5))
	var framesEqual, inputsEqual, mutatedEqual, bothRejected, truncatedEqual int
	hits := map[string]int{}
	for n := range inputs {
		in, mutated := genInput(r)
		ours := parseOurs(in, len(in))
		split := parseOurs(in, r.IntN(len(in)+1))
		if !reflect.DeepEqual(ours.items, split.items) || sentinel(ours.err) != sentinel(split.err) ||
			(ours.err == nil && ours.buffered != split.buffered) {
			t.Fatalf("input %d: one Parse call and two disagree on %q:\nwhole: %v %v\nsplit: %v %v",
				n, in, ours.items, ours.err, split.items, split.err)
		}
		theirs := parseGoStomp(in)
		if reflect.DeepEqual(ours.items, theirs.items) && (ours.err == nil) == (theirs.err == nil) {
			inputsEqual++
			if mutated {
				mutatedEqual++
			}
			for _, it := range ours.items {
				if !it.heartbeat {
					framesEqual++
				}
			}
			if ours.err != nil {
				bothRejected++
			} else if ours.buffered > 0 {
				truncatedEqual++
			}
			continue
		}
		class := classify(in, ours, theirs)
		if class == "" {
			t.Errorf("input %d: unclassified difference on %q:\nours:     %v err=%v\ngo-stomp: %v err=%v",
				n, in, ours.items, ours.err, theirs.items, theirs.err)
			continue
		}
		hits[class]++
	}
	t.Logf("%d inputs: %d agree (%d of them mutated; %d frames equal, %d both rejected, %d both cut mid-frame)",
		inputs, inputsEqual, mutatedEqual, framesEqual, bothRejected, truncatedEqual)
	for _, c := range knownDiffs {
		t.Logf("%5d known difference: %s", hits[c], c)
		if hits[c] == 0 {
			t.Errorf("corpus never hit known difference %q", c)
		}
	}
	// Thresholds well under what the fixed seed gives, so that a generator
	// change that stops producing meaningful input fails loudly.
	if framesEqual < 6000 || bothRejected < 1000 || truncatedEqual < 250 || mutatedEqual < 750 {
		t.Errorf("corpus too weak: %d frames equal (want >= 6000), %d both rejected (want >= 1000), "+
			"%d both cut mid-frame (want >= 250), %d mutated inputs agree (want >= 750)",
			framesEqual, bothRejected, truncatedEqual, mutatedEqual)
	}
}

// TestDifferentialConnectEscaping pins the difference the corpus leaves out:
// STOMP 1.2, Value Encoding: "CONNECT and CONNECTED frames do not escape the
// carriage return, line feed or colon octets in order to remain backward
// compatible with STOMP 1.0", so a backslash there is an ordinary byte. go-stomp
// unescapes every frame.
func TestDifferentialConnectEscaping(t *testing.T) {
	tests := []struct {
		name, input, key string
		ours, goStomp    string
	}{
		{"CONNECT passcode", "CONNECT\naccept-version:1.2\npasscode:a\\cb\n\n\x00", "passcode", `a\cb`, "a:b"},
		{"STOMP login", "STOMP\nlogin:x\\ny\n\n\x00", "login", `x\ny`, "x\ny"},
		{"CONNECTED session", "CONNECTED\nsession:s\\\\1\n\n\x00", "session", `s\\1`, `s\1`},
		{"CONNECT undefined escape", "CONNECT\nhost:a\\tb\n\n\x00", "host", `a\tb`, `a\tb`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ours := parseOurs([]byte(tt.input), len(tt.input))
			theirs := parseGoStomp([]byte(tt.input))
			if ours.err != nil || theirs.err != nil || len(ours.items) != 1 || len(theirs.items) != 1 {
				t.Fatalf("want one frame each: ours %v %v, go-stomp %v %v", ours.items, ours.err, theirs.items, theirs.err)
			}
			if got := headerValue(ours.items[0], tt.key); got != tt.ours {
				t.Errorf("ours: %s = %q, want %q", tt.key, got, tt.ours)
			}
			if got := headerValue(theirs.items[0], tt.key); got != tt.goStomp {
				t.Errorf("go-stomp: %s = %q, want %q", tt.key, got, tt.goStomp)
			}
		})
	}
}

func headerValue(it item, key string) string {
	f := strings.Split(it.headers, "\x00")
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] == key {
			return f[i+1]
		}
	}
	return "<missing>"
}
