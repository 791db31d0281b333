package broker

import "sync"

// queueIndex is a read-mostly copy of a space's queues map that SENDs on
// every core read without a lock (sync.Map: a lookup of a queue that
// exists touches no shared cache line that writers keep changing). It is
// written only where space.queues is, under space.mu (setQueueLocked,
// dropQueueLocked).
type queueIndex struct{ m sync.Map }

func newQueueIndex() *queueIndex { return &queueIndex{} }

// get returns the queue named name, or nil.
func (x *queueIndex) get(name string) *queue {
	if v, ok := x.m.Load(name); ok {
		return v.(*queue)
	}
	return nil
}

func (x *queueIndex) put(name string, q *queue) { x.m.Store(name, q) }

func (x *queueIndex) del(name string) { x.m.Delete(name) }

// setQueueLocked makes q the queue named name. Caller holds sp.mu.
func (sp *space) setQueueLocked(name string, q *queue) {
	sp.queues[name] = q
	sp.index.put(name, q)
}

// dropQueueLocked forgets the queue named name. Caller holds sp.mu.
func (sp *space) dropQueueLocked(name string) {
	delete(sp.queues, name)
	sp.index.del(name)
}
