package frames_test

import (
	"fmt"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// printer prints each frame; the frame's bytes are only valid inside
// HandleFrame, so anything kept must be copied.
type printer struct{}

func (printer) HandleFrame(f *frames.Frame) error {
	dest, _ := f.Header("destination")
	fmt.Printf("%s to %s: %q\n", f.Command, dest, f.Body)
	return nil
}

func (printer) HandleHeartbeat() error {
	fmt.Println("heart-beat")
	return nil
}

func ExampleParser() {
	p := frames.NewParser(frames.Limits{MaxBody: 1 << 20})
	// One frame split across two reads, then a heart-beat and a second frame.
	_ = p.Parse([]byte("SEND\ndestination:/queue/a\n\nhel"), printer{})
	_ = p.Parse([]byte("lo\x00\nSEND\ndestination:/topic/b\ncontent-length:3\n\na\x00b\x00"), printer{})

	err := p.Parse([]byte("SEND\ncontent-length:2000000\n\n"), printer{})
	fmt.Println(frames.ErrorCode(err), err)
	// Output:
	// SEND to /queue/a: "hello"
	// heart-beat
	// SEND to /topic/b: "a\x00b"
	// frame-too-large frames: frame too large: content-length 2000000 over the 1048576 byte limit
}

func ExampleAppendFrame() {
	msg := frames.Frame{
		Command: frames.CmdMessage,
		Headers: []frames.Header{
			{Key: []byte("destination"), Value: []byte("/topic/chat")},
			{Key: []byte("note"), Value: []byte("a:b")},
		},
		Body: []byte("hi"),
	}
	out := frames.AppendFrame(nil, frames.V12, &msg)
	fmt.Printf("%q\n", out)
	// Output:
	// "MESSAGE\ndestination:/topic/chat\nnote:a\\cb\ncontent-length:2\n\nhi\x00"
}

func ExampleNegotiateHeartBeat() {
	server := frames.HeartBeat{Send: 10 * time.Second, Receive: 10 * time.Second}
	client, _ := frames.ParseHeartBeat([]byte("4000,20000"))
	send, expect := frames.NegotiateHeartBeat(server, client)
	fmt.Println("server sends every", send, "and expects the client every", expect)
	// Output:
	// server sends every 20s and expects the client every 10s
}
