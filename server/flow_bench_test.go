package server

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
)

// flowBenchMessages is the run: 200,000 x 128 B SENDs as fast as
// one producer can, to a queue with one consumer.
const flowBenchMessages = 200_000

// BenchmarkFlowWorkQueue is that run, one op each: the producer sends
// without waiting (the last SEND with a receipt), the consumer takes every
// message (auto-ack, or client-individual ACKing each with prefetch-count
// 16, which go-stomp needs to not deadlock itself). "defaults" has the
// command's default rate limit (20,000 frames/s, 64 MiB/s); "no-rate"
// only the queue and budget limits. msgs/s is messages received per
// second of wall time; blocked-s/op the producer's blocked (and
// throttled) time from stompbox_blocked_seconds_total, by reason.
func BenchmarkFlowWorkQueue(b *testing.B) {
	for _, limits := range []struct {
		name string
		cfg  broker.Config
	}{
		{"defaults", broker.Config{MaxFramesPerSecond: 20_000, MaxBytesPerSecond: 64 << 20}},
		{"no-rate", broker.Config{}},
	} {
		for _, mode := range []struct {
			name string
			ack  stomp.AckMode
		}{{"auto", stomp.AckAuto}, {"client-individual", stomp.AckClientIndividual}} {
			b.Run(limits.name+"/"+mode.name, func(b *testing.B) {
				reg := prometheus.NewRegistry()
				srv := startServer(b, Config{Broker: limits.cfg, Registry: reg})
				var elapsed time.Duration
				before := blockedSeconds(b, reg)
				for i := range b.N {
					elapsed += flowBenchRun(b, srv.addr, "/queue/bench-"+strconv.Itoa(i), mode.ack)
				}
				after := blockedSeconds(b, reg)
				b.ReportMetric(float64(b.N*flowBenchMessages)/elapsed.Seconds(), "msgs/s")
				for _, r := range []string{"queue", "total", "budget", "rate"} {
					if d := after[r] - before[r]; d > 0 {
						b.ReportMetric(d/float64(b.N), "blocked-"+r+"-s/op")
					}
				}
			})
		}
	}
}

// flowBenchRun runs 200,000 messages through dest and returns how long
// the consumer took to get them all.
func flowBenchRun(b *testing.B, addr, dest string, ack stomp.AckMode) time.Duration {
	opts := []func(*stomp.Conn) error{stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.Logger(throughputLogger{})}
	consumer, err := stomp.Dial("tcp", addr, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.MustDisconnect()
	producer, err := stomp.Dial("tcp", addr, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer producer.MustDisconnect()
	var subOpts []func(*stompframe.Frame) error
	if ack != stomp.AckAuto {
		subOpts = append(subOpts, stomp.SubscribeOpt.Header("prefetch-count", "16"))
	}
	sub, err := consumer.Subscribe(dest, ack, subOpts...)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 128)
	sent := make(chan error, 1)
	start := time.Now()
	go func() {
		for i := range flowBenchMessages {
			var o []func(*stompframe.Frame) error
			if i == flowBenchMessages-1 {
				o = append(o, stomp.SendOpt.Receipt)
			}
			if err := producer.Send(dest, "", body, o...); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	for i := range flowBenchMessages {
		select {
		case m, ok := <-sub.C:
			if !ok || m.Err != nil || len(m.Body) != len(body) {
				b.Fatalf("message %d: %v", i, m)
			}
			if ack != stomp.AckAuto {
				if err := consumer.Ack(m); err != nil {
					b.Fatal(err)
				}
			}
		case <-time.After(30 * time.Second):
			b.Fatalf("message %d not delivered", i)
		}
	}
	elapsed := time.Since(start)
	if err := <-sent; err != nil {
		b.Fatalf("producer: %v", err)
	}
	return elapsed
}

// blockedSeconds reads stompbox_blocked_seconds_total by reason.
func blockedSeconds(b *testing.B, reg *prometheus.Registry) map[string]float64 {
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "stompbox_blocked_seconds_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	if len(out) == 0 {
		b.Fatal("no stompbox_blocked_seconds_total")
	}
	return out
}
