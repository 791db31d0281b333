package broker

import "fmt"

// memDurNode is a memNode whose cluster keeps durable subscriptions
// (ClusterDurables): a registry and holders shared by the nodes of the
// memCluster, applied to every node at once, synchronously.
type memDurNode struct {
	*memNode
}

// memDurables is the registry of a memCluster with durable subscriptions.
type memDurables struct {
	specs   map[string]memReg   // by vhost + key
	holders map[string]*memHold // by vhost + key
	holdErr error               // HoldDurable fails with this when set
}

type memReg struct {
	vhost string
	spec  DurableSpec
}

type memHold struct {
	node *memNode
	n    int
}

func durRegKey(vhost string, s DurableSpec) string {
	return fmt.Sprintf("%q %q %q %q", vhost, s.User, s.ClientID, s.Name)
}

// durNode builds a broker joined to the cluster, which keeps durable
// subscriptions; the registry's present entries are applied to it.
func (c *memCluster) durNode(cfg Config) *memDurNode {
	n := &memNode{c: c, interest: make(map[string]int)}
	dn := &memDurNode{n}
	cfg.Cluster = dn
	n.b = New(cfg)
	c.mu.Lock()
	if c.dur == nil {
		c.dur = &memDurables{specs: map[string]memReg{}, holders: map[string]*memHold{}}
	}
	c.nodes = append(c.nodes, n)
	var regs []memReg
	for _, r := range c.dur.specs {
		regs = append(regs, r)
	}
	c.mu.Unlock()
	for _, r := range regs {
		n.b.ApplyRemoteDurable(r.vhost, r.spec, true)
	}
	return dn
}

// applyAll hands a registry change to every node.
func (c *memCluster) applyAll(vhost string, spec DurableSpec, present bool) {
	c.mu.Lock()
	nodes := append([]*memNode(nil), c.nodes...)
	c.mu.Unlock()
	for _, o := range nodes {
		o.b.ApplyRemoteDurable(vhost, spec, present)
	}
}

func (n *memDurNode) CreateDurable(vhost string, spec DurableSpec) (DurableSpec, error) {
	c := n.c
	k := durRegKey(vhost, spec)
	c.mu.Lock()
	if old, ok := c.dur.specs[k]; ok {
		c.mu.Unlock()
		return old.spec, fmt.Errorf("mem: %w", ErrDurableExists)
	}
	c.dur.specs[k] = memReg{vhost, spec}
	c.mu.Unlock()
	c.applyAll(vhost, spec, true)
	return spec, nil
}

func (n *memDurNode) RemoveDurable(vhost string, spec DurableSpec) error {
	c := n.c
	c.mu.Lock()
	delete(c.dur.specs, durRegKey(vhost, spec))
	delete(c.queues, vhost+durableQueueName(spec)) // its backlog is purged
	c.mu.Unlock()
	c.applyAll(vhost, spec, false)
	return nil
}

func (n *memDurNode) HoldDurable(vhost string, spec DurableSpec) error {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dur.holdErr != nil {
		return c.dur.holdErr
	}
	k := durRegKey(vhost, spec)
	h := c.dur.holders[k]
	if h != nil && h.node != n.memNode {
		return fmt.Errorf("mem: %w", ErrDurableHeld)
	}
	if h == nil {
		h = &memHold{node: n.memNode}
		c.dur.holders[k] = h
	}
	h.n++
	return nil
}

func (n *memDurNode) ReleaseDurable(vhost string, spec DurableSpec) {
	c := n.c
	c.mu.Lock()
	defer c.mu.Unlock()
	k := durRegKey(vhost, spec)
	if h := c.dur.holders[k]; h != nil && h.node == n.memNode {
		if h.n--; h.n == 0 {
			delete(c.dur.holders, k)
		}
	}
}

// dropHolds forgets every hold of node n (the node died).
func (c *memCluster) dropHolds(n *memNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, h := range c.dur.holders {
		if h.node == n {
			delete(c.dur.holders, k)
		}
	}
}

var _ ClusterDurables = (*memDurNode)(nil)
