package broker

import (
	"slices"
	"sync"
	"testing"
)

// memCluster is an in-memory Cluster shared by several brokers (nodes) of
// one test: topics go to the other nodes' interested patterns, queues live
// in one shared store the test pumps into the nodes' feeds. Everything is
// synchronous and driven by the test, so outcomes are deterministic.
type memCluster struct {
	mu       sync.Mutex
	nodes    []*memNode
	queues   map[string]*memQueue // by vhost + queue
	holdPubs bool                 // PublishQueue waits for confirm
	held     []heldPub
	pubErr   error // PublishQueue's done gets this (nil: stored)
	// refuse, when set, decides per message instead of pubErr.
	refuse   func(m *Message) error
	topicErr error         // PublishTopic returns this
	presence []memPresence // PresenceChanged calls not yet pumped (cluster_presence_test.go)
	dur      *memDurables  // the durable subscriptions' registry (cluster_durable_fake_test.go)
}

type heldPub struct {
	key  string
	m    *Message
	done ClusterDone
}

// memNode is one broker's view of the cluster.
type memNode struct {
	c        *memCluster
	b        *Broker
	interest map[string]int // vhost + "\x00" + pattern -> on count
	events   []string       // "+pattern" / "-pattern", in order
	feeds    []*memFeed
	hist     *memHistories // set for a memHistNode (cluster_history_fake_test.go)
}

type memQueue struct {
	ready  []*memMsg
	acked  []string // message ids
	termed []string
	naks   int
}

type memMsg struct {
	m          *Message
	deliveries int
}

type memFeed struct {
	n       *memNode
	key     string
	sink    QueueSink
	stopped bool
	more    int
}

func newMemCluster() *memCluster { return &memCluster{queues: make(map[string]*memQueue)} }

// node builds a broker joined to the cluster.
func (c *memCluster) node(cfg Config) *memNode {
	n := &memNode{c: c, interest: make(map[string]int)}
	cfg.Cluster = n
	n.b = New(cfg)
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n
}

func (n *memNode) TopicInterest(vhost, pattern string, on bool) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	k := vhost + "\x00" + pattern
	if on {
		n.interest[k]++
		n.events = append(n.events, "+"+pattern)
	} else {
		n.interest[k]--
		n.events = append(n.events, "-"+pattern)
	}
}

func (n *memNode) PublishTopic(vhost, topic string, m *Message) error {
	n.c.mu.Lock()
	if err := n.c.topicErr; err != nil {
		n.c.mu.Unlock()
		return err
	}
	type target struct {
		b       *Broker
		pattern string
	}
	var ts []target
	for _, o := range n.c.nodes {
		if o == n {
			continue
		}
		for k, on := range o.interest {
			v, p, _ := cutNul(k)
			if on > 0 && v == vhost && topicMatch(p, topic) {
				ts = append(ts, target{o.b, p})
			}
		}
	}
	n.c.mu.Unlock()
	for _, t := range ts {
		t.b.DeliverTopic(vhost, topic, m, func(p string) bool { return p == t.pattern })
	}
	return nil
}

func cutNul(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == 0 {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (n *memNode) PublishQueue(vhost, queue string, m *Message, done ClusterDone) error {
	c := n.c
	c.mu.Lock()
	key := vhost + queue
	if c.holdPubs {
		c.held = append(c.held, heldPub{key, m, done})
		c.mu.Unlock()
		return nil
	}
	err := c.pubErr
	if c.refuse != nil {
		err = c.refuse(m)
	}
	if err == nil {
		c.storeLocked(key, m)
	}
	c.mu.Unlock()
	done.ClusterDone(err)
	return nil
}

func (c *memCluster) storeLocked(key string, m *Message) {
	q := c.queues[key]
	if q == nil {
		q = &memQueue{}
		c.queues[key] = q
	}
	q.ready = append(q.ready, &memMsg{m: m})
}

// confirm completes the held PublishQueue calls with err (nil: stored).
func (c *memCluster) confirm(err error) {
	c.mu.Lock()
	held := c.held
	c.held = nil
	for _, h := range held {
		if err == nil {
			c.storeLocked(h.key, h.m)
		}
	}
	c.mu.Unlock()
	for _, h := range held {
		h.done.ClusterDone(err)
	}
}

func (n *memNode) ConsumeQueue(vhost, queue string, sink QueueSink) QueueFeed {
	f := &memFeed{n: n, key: vhost + queue, sink: sink}
	n.c.mu.Lock()
	n.feeds = append(n.feeds, f)
	n.c.mu.Unlock()
	return f
}

func (f *memFeed) More() { f.n.c.mu.Lock(); f.more++; f.n.c.mu.Unlock() }
func (f *memFeed) Stop() { f.n.c.mu.Lock(); f.stopped = true; f.n.c.mu.Unlock() }

// pump feeds every live feed what its credit allows, node by node, one
// message at a time round-robin, until nothing moves.
func (c *memCluster) pump() {
	for range 10000 {
		moved := false
		c.mu.Lock()
		var feeds []*memFeed
		for _, n := range c.nodes {
			for _, f := range n.feeds {
				if !f.stopped {
					feeds = append(feeds, f)
				}
			}
		}
		c.mu.Unlock()
		for _, f := range feeds {
			if f.sink.Credit() == 0 {
				continue
			}
			c.mu.Lock()
			q := c.queues[f.key]
			if q == nil || len(q.ready) == 0 {
				c.mu.Unlock()
				continue
			}
			mm := q.ready[0]
			q.ready = q.ready[1:]
			mm.deliveries++
			c.mu.Unlock()
			f.sink.Offer(mm.m, mm.deliveries, &memSettler{c: c, q: q, mm: mm})
			moved = true
		}
		if !moved {
			return
		}
	}
	panic("memCluster.pump did not settle")
}

// memSettler settles one fed message; a second settlement is a bug the
// test reports.
type memSettler struct {
	c       *memCluster
	q       *memQueue
	mm      *memMsg
	settled int
}

func (s *memSettler) settle(f func()) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.settled++
	if s.settled > 1 {
		panic("message " + s.mm.m.ID + " settled twice")
	}
	f()
}

func (s *memSettler) Ack() { s.settle(func() { s.q.acked = append(s.q.acked, s.mm.m.ID) }) }
func (s *memSettler) Term() {
	s.settle(func() { s.q.termed = append(s.q.termed, s.mm.m.ID) })
}
func (s *memSettler) Nak() {
	s.settle(func() {
		s.q.naks++
		s.q.ready = append([]*memMsg{s.mm}, s.q.ready...)
	})
}

// queue returns a snapshot of the shared queue's state.
func (c *memCluster) queue(key string) memQueue {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queues[key]
	if q == nil {
		return memQueue{}
	}
	return memQueue{ready: slices.Clone(q.ready), acked: slices.Clone(q.acked), termed: slices.Clone(q.termed), naks: q.naks}
}

func (c *memCluster) liveFeeds() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, nd := range c.nodes {
		for _, f := range nd.feeds {
			if !f.stopped {
				n++
			}
		}
	}
	return n
}

var _ Cluster = (*memNode)(nil)

func mustFrame(t *testing.T, c *client, cmd string) {
	t.Helper()
	if f := c.next(); f.Command.String() != cmd {
		t.Fatalf("got %s (%s: %s), want %s", f.Command, hdr(f, "error-code"), hdr(f, "message"), cmd)
	}
}

func (n *memNode) ReplyInterest(vhost, token string, on bool) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	k := vhost + "\x00reply\x00" + token
	if on {
		n.interest[k]++
		n.events = append(n.events, "+reply")
	} else {
		n.interest[k]--
		n.events = append(n.events, "-reply")
	}
}

func (n *memNode) PublishReply(vhost, key string, m *Message) error {
	n.c.mu.Lock()
	var to *Broker
	for _, o := range n.c.nodes {
		for k, on := range o.interest {
			if on > 0 && len(key) > len("/reply-queue/") && k == vhost+"\x00reply\x00"+key[len("/reply-queue/"):len("/reply-queue/")+32] {
				to = o.b
			}
		}
	}
	n.c.mu.Unlock()
	if to != nil {
		to.DeliverReply(vhost, key, m)
	}
	return nil
}
