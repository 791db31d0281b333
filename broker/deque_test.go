package broker

import "testing"

// dequeModel checks a deque against a slice doing the same operations.
type dequeModel struct {
	t     *testing.T
	d     deque[int]
	model []int
}

func (m *dequeModel) pushBack(v int) {
	m.d.PushBack(v)
	m.model = append(m.model, v)
	m.check()
}

func (m *dequeModel) pushFront(v int) {
	m.d.PushFront(v)
	m.model = append([]int{v}, m.model...)
	m.check()
}

func (m *dequeModel) popFront() {
	m.t.Helper()
	if got, want := m.d.PopFront(), m.model[0]; got != want {
		m.t.Fatalf("PopFront = %d, want %d", got, want)
	}
	m.model = m.model[1:]
	m.check()
}

func (m *dequeModel) check() {
	m.t.Helper()
	if m.d.Len() != len(m.model) {
		m.t.Fatalf("Len = %d, want %d", m.d.Len(), len(m.model))
	}
	if len(m.model) > 0 && m.d.Front() != m.model[0] {
		m.t.Fatalf("Front = %d, want %d", m.d.Front(), m.model[0])
	}
	for i, want := range m.model {
		if got := m.d.buf[(m.d.head+i)%len(m.d.buf)]; got != want {
			m.t.Fatalf("element %d = %d, want %d (head %d, cap %d)", i, got, want, m.d.head, len(m.d.buf))
		}
	}
}

func TestDeque(t *testing.T) {
	t.Run("fifo", func(t *testing.T) {
		m := &dequeModel{t: t}
		for i := range 20 { // grows 8 -> 16 -> 32
			m.pushBack(i)
		}
		if len(m.d.buf) != 32 {
			t.Fatalf("capacity %d, want 32", len(m.d.buf))
		}
		for range 20 {
			m.popFront()
		}
	})
	t.Run("push front", func(t *testing.T) {
		m := &dequeModel{t: t}
		for i := range 20 {
			m.pushFront(i) // head wraps below zero on the first push
		}
		for range 20 {
			m.popFront()
		}
	})
	t.Run("wraparound then growth", func(t *testing.T) {
		m := &dequeModel{t: t}
		for i := range 8 {
			m.pushBack(i)
		}
		for range 5 {
			m.popFront()
		}
		for i := 8; i < 13; i++ { // tail wraps to the start of the buffer
			m.pushBack(i)
		}
		if m.d.head == 0 || len(m.d.buf) != 8 {
			t.Fatalf("head %d cap %d: want a wrapped full buffer of 8", m.d.head, len(m.d.buf))
		}
		m.pushFront(-1) // grows while wrapped: order must survive the copy
		m.pushBack(13)
		for m.d.Len() > 0 {
			m.popFront()
		}
	})
	t.Run("mixed ends", func(t *testing.T) {
		m := &dequeModel{t: t}
		for i := range 300 {
			switch i % 5 {
			case 0, 1:
				m.pushBack(i)
			case 2:
				m.pushFront(i)
			default:
				if m.d.Len() > 0 {
					m.popFront()
				}
			}
		}
	})
	t.Run("big emptied deque gives memory back", func(t *testing.T) {
		var d deque[*int]
		for range 2000 {
			d.PushBack(new(int))
		}
		for range 2000 {
			d.PopFront()
		}
		if d.buf != nil || d.Len() != 0 {
			t.Fatalf("cap %d len %d after draining, want a released buffer", len(d.buf), d.Len())
		}
		d.PushBack(new(int)) // still usable
		if d.Len() != 1 {
			t.Fatal("unusable after release")
		}
	})
	t.Run("popped slots are cleared", func(t *testing.T) {
		var d deque[*int]
		d.PushBack(new(int))
		d.PushBack(new(int))
		d.PopFront()
		if d.buf[0] != nil {
			t.Fatal("popped slot still references its element")
		}
	})
}
