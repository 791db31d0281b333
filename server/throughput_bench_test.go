package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// throughputWindow bounds the messages in flight between producer and
// consumer, so a fast producer measures the broker, not a growing queue
// (which would end in limit-exceeded past MaxQueueMessages).
const throughputWindow = 4096

// BenchmarkQueueThroughputTCP measures one go-stomp producer sending 128 B
// bodies to /queue/throughput and one go-stomp consumer (ack auto)
// receiving them, over loopback TCP through a whole server. msgs/s counts
// messages received by the consumer per second of wall time; B/op and
// allocs/op include both clients.
func BenchmarkQueueThroughputTCP(b *testing.B) {
	srv := startServer(b, Config{})
	opts := []func(*stomp.Conn) error{
		stomp.ConnOpt.HeartBeat(0, 0),
		stomp.ConnOpt.Logger(throughputLogger{}),
	}
	consumer, err := stomp.Dial("tcp", srv.addr, opts...)
	if err != nil {
		b.Fatal(err)
	}
	producer, err := stomp.Dial("tcp", srv.addr, opts...)
	if err != nil {
		b.Fatal(err)
	}
	sub, err := consumer.Subscribe("/queue/throughput", stomp.AckAuto)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 128)
	credits := make(chan struct{}, throughputWindow)
	received := make(chan error, 1)

	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	go func() {
		for range b.N {
			select {
			case m, ok := <-sub.C:
				switch {
				case !ok:
					received <- errSubscriptionClosed
					return
				case m.Err != nil:
					received <- m.Err
					return
				case len(m.Body) != len(body):
					received <- errWrongBody
					return
				}
				<-credits
			case <-time.After(10 * time.Second):
				received <- errNoMessage
				return
			}
		}
		received <- nil
	}()
	for range b.N {
		select {
		case credits <- struct{}{}:
		case err := <-received: // the consumer gave up
			b.Fatal(err)
		}
		if err := producer.Send("/queue/throughput", "", body); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-received; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")

	if err := sub.Unsubscribe(); err != nil {
		b.Fatal(err)
	}
	if err := consumer.Disconnect(); err != nil {
		b.Fatal(err)
	}
	if err := producer.Disconnect(); err != nil {
		b.Fatal(err)
	}
}

type throughputError string

func (e throughputError) Error() string { return string(e) }

const (
	errSubscriptionClosed throughputError = "subscription closed before every message arrived"
	errWrongBody          throughputError = "message with the wrong body"
	errNoMessage          throughputError = "no message for 10s"
)

// throughputLogger keeps go-stomp quiet in benchmark output.
type throughputLogger struct{}

func (throughputLogger) Debugf(string, ...any)   {}
func (throughputLogger) Infof(string, ...any)    {}
func (throughputLogger) Warningf(string, ...any) {}
func (throughputLogger) Errorf(string, ...any)   {}
func (throughputLogger) Debug(string)            {}
func (throughputLogger) Info(string)             {}
func (throughputLogger) Warning(string)          {}
func (throughputLogger) Error(string)            {}
