package broker

import (
	"fmt"
	"strings"
	"sync"
)

// memHistNode is a memNode whose cluster keeps topic histories
// (ClusterHistory): one stream per vhost and rule in the memCluster's
// memHistories, kept with the rule's per-topic size, and mirrored into
// each node's sink when the test calls mirror (as the cluster's mirror
// goroutines would, later).
type memHistNode struct {
	*memNode
	sinks map[string]HistorySink // by stream key
	pos   map[string]uint64      // by stream key: the last seq handed to the sink
}

// memHistories holds the streams of a memCluster.
type memHistories struct {
	mu      sync.Mutex
	streams map[string]*memStream
	pubErr  error      // PublishHistory's done gets this (nil: stored)
	full    int        // PublishHistory refuses this many more with ErrClusterFull (nothing sent)
	pubs    []*Message // every message PublishHistory was handed
}

type memStream struct {
	epoch string
	size  int
	msgs  []memStored // retained, in seq order
	last  uint64
}

type memStored struct {
	seq   uint64
	topic string
	m     *Message
}

func streamKey(vhost string, rule int) string { return vhost + "\x00" + string(rune('0'+rule)) }

// histNode builds a broker joined to the cluster's histories h.
func (c *memCluster) histNode(h *memHistories, cfg Config) *memHistNode {
	n := &memHistNode{memNode: &memNode{c: c, interest: make(map[string]int)}, sinks: map[string]HistorySink{}, pos: map[string]uint64{}}
	h.mu.Lock()
	if h.streams == nil {
		h.streams = map[string]*memStream{}
	}
	h.mu.Unlock()
	n.hist = h
	cfg.Cluster = n
	n.b = New(cfg)
	c.mu.Lock()
	c.nodes = append(c.nodes, n.memNode)
	c.mu.Unlock()
	return n
}

func (n *memHistNode) KeepHistory(vhost string, rule int, r HistoryRule, sink HistorySink) {
	h := n.hist
	h.mu.Lock()
	defer h.mu.Unlock()
	k := streamKey(vhost, rule)
	if h.streams[k] == nil {
		h.streams[k] = &memStream{epoch: "e1", size: r.Size}
	}
	n.sinks[k] = sink
}

func (n *memHistNode) PublishHistory(vhost, topic string, rule int, m *Message, done ClusterDone) error {
	h := n.hist
	h.mu.Lock()
	if h.full > 0 {
		h.full--
		h.mu.Unlock()
		return fmt.Errorf("mirror behind: %w", ErrClusterFull)
	}
	h.pubs = append(h.pubs, m)
	err := h.pubErr
	if err == nil {
		s := h.streams[streamKey(vhost, rule)]
		s.last++
		s.msgs = append(s.msgs, memStored{s.last, topic, m})
		// Per topic, the oldest past the rule's size go.
		var kept []memStored
		count := 0
		for i := len(s.msgs) - 1; i >= 0; i-- {
			if s.msgs[i].topic == topic {
				count++
				if count > s.size {
					continue
				}
			}
			kept = append(kept, s.msgs[i])
		}
		for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
			kept[i], kept[j] = kept[j], kept[i]
		}
		s.msgs = kept
	}
	h.mu.Unlock()
	done.ClusterDone(err)
	return nil
}

// start (re)starts n's mirror of vhost's rule: Start, then everything
// the stream holds from the seq it returns.
func (n *memHistNode) start(vhost string, rule int) uint64 {
	k := streamKey(vhost, rule)
	n.hist.mu.Lock()
	s := n.hist.streams[k]
	epoch, last := s.epoch, s.last
	n.hist.mu.Unlock()
	from := n.sinks[k].Start(epoch, last)
	n.pos[k] = from - 1
	n.mirror(vhost, rule)
	return from
}

// mirror hands n's sink what the stream holds after what it had.
func (n *memHistNode) mirror(vhost string, rule int) {
	k := streamKey(vhost, rule)
	n.hist.mu.Lock()
	var todo []memStored
	for _, st := range n.hist.streams[k].msgs {
		if st.seq > n.pos[k] {
			todo = append(todo, st)
		}
	}
	n.hist.mu.Unlock()
	for _, st := range todo {
		n.sinks[k].Deliver(st.seq, st.topic, st.m, n.b.nowMs())
		n.pos[k] = st.seq
	}
}

// renew gives the stream a new lifetime (the cluster lost it), empty.
func (h *memHistories) renew(vhost string, rule int, epoch string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.streams[streamKey(vhost, rule)]
	s.epoch, s.msgs, s.last = epoch, nil, 0
}

// offsetSeq is the seq of an offset header value.
func offsetSeq(off string) string {
	_, seq, _ := strings.Cut(off, "-")
	return seq
}
