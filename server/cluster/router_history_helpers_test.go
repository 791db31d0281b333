package cluster

import (
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// histStart is one HistorySink.Start call and its answer.
type histStart struct {
	epoch      string
	last, from uint64
}

// histDelivery is one HistorySink.Deliver call.
type histDelivery struct {
	seq   uint64
	topic string
	m     *broker.Message
	at    int64
}

// fakeHistSink is a broker.HistorySink that keeps the contract's answer
// for Start (1 for a new epoch, the one after the last delivered for the
// epoch it has) and records every call. gate, when set, makes Deliver wait
// for a value (or 10s) first, to hold a mirror back.
type fakeHistSink struct {
	mu        sync.Mutex
	epoch     string
	delivered uint64 // the last seq delivered of epoch
	starts    []histStart
	got       []histDelivery // every Deliver call, repeats included
	repeats   int            // Deliver calls with a seq delivered already
	gate      chan struct{}
}

func (s *fakeHistSink) Start(epoch string, last uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := uint64(1)
	if epoch == s.epoch {
		from = s.delivered + 1
	} else {
		s.epoch, s.delivered = epoch, 0
	}
	s.starts = append(s.starts, histStart{epoch, last, from})
	return from
}

func (s *fakeHistSink) Deliver(seq uint64, topic string, m *broker.Message, at int64) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-time.After(10 * time.Second):
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, histDelivery{seq, topic, m, at})
	if seq <= s.delivered {
		s.repeats++
		return
	}
	s.delivered = seq
}

// deliveries is a copy of what Deliver got.
func (s *fakeHistSink) deliveries() []histDelivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]histDelivery(nil), s.got...)
}

// startCalls is a copy of the Start calls.
func (s *fakeHistSink) startCalls() []histStart {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]histStart(nil), s.starts...)
}

// waitDeliveries waits until Deliver was called n times and returns them.
func (s *fakeHistSink) waitDeliveries(t *testing.T, n int) []histDelivery {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%d deliveries", n), func() bool { return len(s.deliveries()) >= n })
	return s.deliveries()
}

// seqs are the sequences of ds.
func seqs(ds []histDelivery) []uint64 {
	out := make([]uint64, len(ds))
	for i, d := range ds {
		out[i] = d.seq
	}
	return out
}

// epochPattern is what the broker's parseOffset accepts as an epoch.
var epochPattern = regexp.MustCompile(`^[0-9a-f]{1,16}$`)

// publishHistoryWait publishes m to topic under rule 0 of "/" and returns
// done's error (or PublishHistory's).
func publishHistoryWait(t *testing.T, r *router, topic string, m *broker.Message) error {
	t.Helper()
	ch := make(chan error, 1)
	if err := r.PublishHistory("/", topic, 0, m, broker.ClusterDoneFunc(func(err error) { ch <- err })); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("PublishHistory: done never called")
		return nil
	}
}

// histMessage is a topic message with an extra header.
func histMessage(id, topic, body string) *broker.Message {
	dest := "/topic/" + topic
	return broker.RecoveredMessage(id, dest, hdrs("destination", dest, "x-n", id), []byte(body), false, 0)
}
