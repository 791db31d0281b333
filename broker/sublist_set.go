package broker

import "sync/atomic"

// subSet is the subscriptions of one exact topic name or one wildcard
// pattern. Publishers iterate it with no lock while sessions subscribe and
// unsubscribe, and neither side copies the whole set:
//
//   - add writes the next free slot of the current array and only then
//     publishes the new length, so a publisher that loaded the old length
//     never looks at the slot being written;
//   - remove clears the subscription's slot (a tombstone, skipped by
//     publishers) instead of moving others, so no publisher sees a
//     subscription twice or misses one that stays;
//   - when the array is full, or mostly tombstones, the live subscriptions
//     move to a new array (in order) that replaces it atomically; a
//     publisher still iterating the old one finishes there. Each move
//     copies the live subscriptions once for at least as many adds or
//     removes since the last one: amortized O(1) per change.
//
// Slots are atomic pointers because a publisher may read a slot while
// remove clears it. Writers are serialized by sublist.mu.
type subSet struct {
	pattern string // immutable: the exact name or wildcard pattern
	arr     atomic.Pointer[subArray]
	live    atomic.Int32          // subscriptions in the set; read by metrics without a lock
	index   map[*subscription]int // guarded by sublist.mu: each subscription's slot in arr
}

// subArray is one generation of a subSet's slots.
type subArray struct {
	n     atomic.Int32 // slots in use; publishers read slots[:n]
	slots []atomic.Pointer[subscription]
}

// minSubArray is the smallest array a subSet allocates: most topics have a
// handful of subscribers.
const minSubArray = 4

func newSubSet() *subSet {
	return &subSet{index: make(map[*subscription]int)}
}

// add appends sub. Caller holds sublist.mu.
func (set *subSet) add(sub *subscription) {
	if _, ok := set.index[sub]; ok {
		return
	}
	a := set.arr.Load()
	if a == nil || int(a.n.Load()) == len(a.slots) {
		a = set.rebuild(a, max(minSubArray, 2*(int(set.live.Load())+1)))
	}
	i := a.n.Load()
	a.slots[i].Store(sub)
	a.n.Store(i + 1) // after the slot: a publisher seeing n sees sub
	set.index[sub] = int(i)
	set.live.Add(1)
}

// remove takes sub out and reports whether it was there. Caller holds
// sublist.mu.
func (set *subSet) remove(sub *subscription) bool {
	i, ok := set.index[sub]
	if !ok {
		return false
	}
	delete(set.index, sub)
	a := set.arr.Load()
	a.slots[i].Store(nil)
	live := int(set.live.Add(-1))
	// Shrink once tombstones outnumber the live slots three to one, so an
	// emptied set does not keep its peak size (and publishers do not skip
	// long runs of nil).
	if dead := int(a.n.Load()) - live; dead >= 4*minSubArray && dead > 3*live {
		set.rebuild(a, max(minSubArray, 2*live))
	}
	return true
}

// rebuild moves the live subscriptions of old (in order) to a new array of
// size slots and publishes it. Caller holds sublist.mu.
func (set *subSet) rebuild(old *subArray, size int) *subArray {
	a := &subArray{slots: make([]atomic.Pointer[subscription], size)}
	n := 0
	if old != nil {
		for i := range old.slots[:old.n.Load()] {
			if sub := old.slots[i].Load(); sub != nil {
				a.slots[n].Store(sub)
				set.index[sub] = n
				n++
			}
		}
	}
	a.n.Store(int32(n))
	set.arr.Store(a)
	return a
}

// deliverTo hands m to every subscription in the set, durable
// subscriptions' feeds only when feeds says so. Nil-safe; no lock.
func (set *subSet) deliverTo(m *Message, feeds bool) {
	if set == nil {
		return
	}
	a := set.arr.Load()
	if a == nil {
		return
	}
	for i := range a.slots[:a.n.Load()] {
		if sub := a.slots[i].Load(); sub != nil && (feeds || sub.feed == nil) {
			sub.deliverTopic(m)
		}
	}
}

// appendFeeds appends the queues of the durable subscriptions' feeds in
// the set to qs. Nil-safe; no lock.
func (set *subSet) appendFeeds(qs []*queue) []*queue {
	if set == nil {
		return qs
	}
	a := set.arr.Load()
	if a == nil {
		return qs
	}
	for i := range a.slots[:a.n.Load()] {
		if sub := a.slots[i].Load(); sub != nil && sub.feed != nil {
			qs = append(qs, sub.feed)
		}
	}
	return qs
}

// appendTo appends the set's subscriptions to subs (tests compare them
// with a brute-force match). Nil-safe; no lock.
func (set *subSet) appendTo(subs []*subscription) []*subscription {
	if set == nil {
		return subs
	}
	a := set.arr.Load()
	if a == nil {
		return subs
	}
	for i := range a.slots[:a.n.Load()] {
		if sub := a.slots[i].Load(); sub != nil {
			subs = append(subs, sub)
		}
	}
	return subs
}
