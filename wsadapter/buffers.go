package wsadapter

import "sync"

// Buffers lends the Conns of a server the buffers they need only for a
// moment, so that an idle Conn holds none: a control frame (ping, pong,
// close) whose payload arrives cut across socket reads is gathered in one
// until it is whole. Share one Buffers between all the Conns of a server
// (Config.Buffers); the zero value is ready to use. Without one, a Conn
// allocates such a buffer for each cut control frame (rare: a chunk
// boundary must fall inside a frame of at most 131 bytes).
type Buffers struct {
	control sync.Pool // of *controlBuf
}

// controlBuf gathers a control frame's payload across reads.
type controlBuf struct {
	n uint8 // payload bytes gathered
	b [125]byte
}

// getControl returns an empty controlBuf; b may be nil.
func (b *Buffers) getControl() *controlBuf {
	if b != nil {
		if cb, ok := b.control.Get().(*controlBuf); ok {
			cb.n = 0
			return cb
		}
	}
	return new(controlBuf)
}

// putControl gives cb back once its frame has been handled; b may be nil.
func (b *Buffers) putControl(cb *controlBuf) {
	if b != nil {
		b.control.Put(cb)
	}
}
