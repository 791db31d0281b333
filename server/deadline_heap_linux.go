package server

// deadlineHeap orders a shard's connections by when the shard must look
// at them next (a binary min-heap; each connection knows its place, so
// moving one is O(log n) and the heap allocates only when it grows).
type deadlineHeap struct {
	items []*pollConn
}

// set puts c in the heap at due, or moves it earlier if it is there
// later; an earlier entry stays (see pollShard.schedule).
func (h *deadlineHeap) set(c *pollConn, due int64) {
	if c.heapAt >= 0 {
		if due < c.due {
			c.due = due
			h.up(int(c.heapAt))
		}
		return
	}
	c.due = due
	c.heapAt = int32(len(h.items))
	h.items = append(h.items, c)
	h.up(int(c.heapAt))
}

// remove takes c out of the heap, if it is there.
func (h *deadlineHeap) remove(c *pollConn) {
	i := int(c.heapAt)
	if i < 0 {
		return
	}
	last := len(h.items) - 1
	h.swap(i, last)
	h.items[last] = nil
	h.items = h.items[:last]
	c.heapAt = -1
	if i < last {
		h.down(i)
		h.up(i)
	}
}

// peek returns the earliest deadline.
func (h *deadlineHeap) peek() (int64, bool) {
	if len(h.items) == 0 {
		return 0, false
	}
	return h.items[0].due, true
}

// popDue takes every connection due at now or before, earliest first,
// appending them to dst.
func (h *deadlineHeap) popDue(now int64, dst []*pollConn) []*pollConn {
	for len(h.items) > 0 && h.items[0].due <= now {
		c := h.items[0]
		h.remove(c)
		dst = append(dst, c)
	}
	return dst
}

func (h *deadlineHeap) less(i, j int) bool { return h.items[i].due < h.items[j].due }

func (h *deadlineHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].heapAt = int32(i)
	h.items[j].heapAt = int32(j)
}

func (h *deadlineHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h *deadlineHeap) down(i int) {
	n := len(h.items)
	for {
		smallest := i
		if l := 2*i + 1; l < n && h.less(l, smallest) {
			smallest = l
		}
		if r := 2*i + 2; r < n && h.less(r, smallest) {
			smallest = r
		}
		if smallest == i {
			return
		}
		h.swap(i, smallest)
		i = smallest
	}
}
