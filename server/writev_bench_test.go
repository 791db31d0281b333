package server

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
)

// BenchmarkWritevBreakEven is where broker.MinBorrowedBody comes from:
// one write of 16 MESSAGE frames (150 header bytes, a body, the NUL) to a
// loopback TCP socket drained by another goroutine, either with every body
// copied next to its headers first (copy: one contiguous write, what the
// writer did for every body before vectored writes) or with the bodies
// left where they are (borrow: one writev of header, body, trailer and
// header, ...). Borrowing saves the copy and costs two iovecs a frame.
func BenchmarkWritevBreakEven(b *testing.B) {
	const framesPerWrite = 16
	for _, size := range []int{256, 512, 1 << 10, 2 << 10, 4 << 10, 16 << 10} {
		for _, borrow := range []bool{false, true} {
			name := "body=" + strconv.Itoa(size) + "/copy"
			if borrow {
				name = "body=" + strconv.Itoa(size) + "/borrow"
			}
			b.Run(name, func(b *testing.B) {
				w := loopbackPair(b)
				head := bytes.Repeat([]byte("h"), 150)
				body := bytes.Repeat([]byte("x"), size)
				nul := []byte{0}
				var buf []byte
				var iov, bufs net.Buffers
				b.SetBytes(int64(framesPerWrite * (len(head) + size + 1)))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					if borrow {
						iov = iov[:0]
						for range framesPerWrite {
							iov = append(iov, head, body, nul)
						}
						bufs = iov
						_, err = bufs.WriteTo(w)
					} else {
						buf = buf[:0]
						for range framesPerWrite {
							buf = append(append(append(buf, head...), body...), 0)
						}
						_, err = w.Write(buf)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// loopbackPair returns the writing end of a loopback TCP connection whose
// other end a goroutine drains until the connection closes (at cleanup).
func loopbackPair(b *testing.B) *net.TCPConn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	r, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, r)
	}()
	b.Cleanup(func() {
		_ = w.Close()
		<-drained
		_ = r.Close()
	})
	return w.(*net.TCPConn)
}
