package frames

// Header is one "key:value" header line, already unescaped.
type Header struct {
	Key   []byte
	Value []byte
}

// Frame is one STOMP frame. Headers keep their wire order and may repeat;
// STOMP 1.2: "only the first header entry SHOULD be used as the value of
// header entry". A Frame handed to a Handler borrows its bytes from the
// parser (see Parser); Clone makes an owned copy.
type Frame struct {
	Command Command
	Headers []Header
	Body    []byte
}

// Header returns the value of the first header named key.
func (f *Frame) Header(key string) (value []byte, ok bool) {
	for i := range f.Headers {
		if string(f.Headers[i].Key) == key {
			return f.Headers[i].Value, true
		}
	}
	return nil, false
}

// Clone returns a copy of f that owns its bytes: all header bytes and the
// body share one new backing array, so a retained frame costs three
// allocations whatever its header count.
func (f *Frame) Clone() *Frame {
	size := len(f.Body)
	for _, h := range f.Headers {
		size += len(h.Key) + len(h.Value)
	}
	backing := make([]byte, 0, size)
	own := func(b []byte) []byte {
		start := len(backing)
		backing = append(backing, b...)
		return backing[start:len(backing):len(backing)]
	}
	c := &Frame{Command: f.Command, Headers: make([]Header, len(f.Headers))}
	for i, h := range f.Headers {
		c.Headers[i] = Header{Key: own(h.Key), Value: own(h.Value)}
	}
	if f.Body != nil {
		c.Body = own(f.Body)
	}
	return c
}

// Names of the headers this package itself interprets.
const (
	HeaderContentLength = "content-length"
	HeaderHeartBeat     = "heart-beat"
	HeaderAcceptVersion = "accept-version"
)
