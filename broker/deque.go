package broker

// deque is a growable ring buffer: FIFO with push at either end, so a queue
// can put a redelivered message back in front without shifting.
type deque[T any] struct {
	buf        []T
	head, size int
}

func (d *deque[T]) Len() int { return d.size }

func (d *deque[T]) grow() {
	n := max(8, 2*len(d.buf))
	buf := make([]T, n)
	for i := range d.size {
		buf[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = buf, 0
}

func (d *deque[T]) PushBack(v T) {
	if d.size == len(d.buf) {
		d.grow()
	}
	d.buf[(d.head+d.size)%len(d.buf)] = v
	d.size++
}

func (d *deque[T]) PushFront(v T) {
	if d.size == len(d.buf) {
		d.grow()
	}
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = v
	d.size++
}

func (d *deque[T]) Front() T { return d.buf[d.head] }

// At is the i-th element from the front (0 <= i < Len), for reading
// without taking anything out (PeekQueue).
func (d *deque[T]) At(i int) T { return d.buf[(d.head+i)%len(d.buf)] }

func (d *deque[T]) PopFront() T {
	var zero T
	v := d.buf[d.head]
	d.buf[d.head] = zero
	d.head = (d.head + 1) % len(d.buf)
	d.size--
	if d.size == 0 && len(d.buf) > 1024 {
		*d = deque[T]{} // an emptied big queue gives its memory back
	}
	return v
}
