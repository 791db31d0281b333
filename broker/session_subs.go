package broker

// subTableLinear is how many subscriptions a session keeps in a plain
// slice, searched linearly, before it indexes them in maps too. Most
// connections have one or a few: two maps made for one entry cost an
// idle connection more than the subscription itself.
const subTableLinear = 8

// subTable is a session's subscriptions, by the client's id and by the
// number inside ack ids; read loop only.
type subTable struct {
	list []*subscription // in the order they were added, removals closed up
	idx  *subIndex       // nil up to subTableLinear subscriptions
}

// subIndex is the maps of a session with many subscriptions.
type subIndex struct {
	byID  map[string]*subscription
	byNum map[uint32]*subscription
}

// size is how many subscriptions there are.
func (t *subTable) size() int { return len(t.list) }

// get returns the subscription with the client's id, or nil. The
// string(id) conversions do not allocate.
func (t *subTable) get(id []byte) *subscription {
	if t.idx != nil {
		return t.idx.byID[string(id)]
	}
	for _, sub := range t.list {
		if sub.id == string(id) {
			return sub
		}
	}
	return nil
}

// getString is get for an id held as a string.
func (t *subTable) getString(id string) *subscription {
	if t.idx != nil {
		return t.idx.byID[id]
	}
	for _, sub := range t.list {
		if sub.id == id {
			return sub
		}
	}
	return nil
}

// byNum returns the subscription numbered num, or nil.
func (t *subTable) byNum(num uint32) *subscription {
	if t.idx != nil {
		return t.idx.byNum[num]
	}
	for _, sub := range t.list {
		if sub.num == num {
			return sub
		}
	}
	return nil
}

// add adds sub; its id must not be taken (handleSubscribe checks).
func (t *subTable) add(sub *subscription) {
	t.list = append(t.list, sub)
	switch {
	case t.idx != nil:
		t.idx.byID[sub.id], t.idx.byNum[sub.num] = sub, sub
	case len(t.list) > subTableLinear:
		t.idx = &subIndex{byID: make(map[string]*subscription, len(t.list)), byNum: make(map[uint32]*subscription, len(t.list))}
		for _, s := range t.list {
			t.idx.byID[s.id], t.idx.byNum[s.num] = s, s
		}
	}
}

// remove removes sub if it is there. Back to subTableLinear or fewer, the
// maps go; the slice stays (small: it is a pointer per subscription), so
// subscribing again does not allocate it again.
func (t *subTable) remove(sub *subscription) {
	for i, s := range t.list {
		if s == sub {
			copy(t.list[i:], t.list[i+1:])
			t.list[len(t.list)-1] = nil
			t.list = t.list[:len(t.list)-1]
			break
		}
	}
	if t.idx != nil {
		if t.idx.byID[sub.id] == sub {
			delete(t.idx.byID, sub.id)
		}
		if t.idx.byNum[sub.num] == sub {
			delete(t.idx.byNum, sub.num)
		}
		if len(t.list) <= subTableLinear {
			t.idx = nil
		}
	}
}

// subs yields the session's subscriptions (by id), last added first. The
// loop body may remove the subscription it was given (removeSubscription),
// as it could from the map this replaced: going backwards, what is left to
// visit does not move.
func (s *Session) subs(yield func(id string, sub *subscription) bool) {
	for i := len(s.subTab.list) - 1; i >= 0; i-- {
		if i >= len(s.subTab.list) {
			continue // the body removed more than its own
		}
		sub := s.subTab.list[i]
		if !yield(sub.id, sub) {
			return
		}
	}
}
