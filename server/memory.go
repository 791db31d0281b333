package server

import (
	"runtime/debug"
	runtimemetrics "runtime/metrics"
)

// A burst of work (thousands of WebSocket upgrades, a backlog drained)
// leaves garbage that the collector only reclaims once the program
// allocates again; an idle broker does not. Until then the process keeps
// up to GOGC percent of its live heap on top of it: for idle connections,
// more memory than the connections themselves. memoryReleaser collects
// and returns that memory to the system once the broker has gone quiet.
type memoryReleaser struct {
	read    func(*memorySample)
	release func()
	// allocs is the cumulative allocation at the previous check.
	allocs uint64
}

// memorySample is what memoryReleaser reads of the runtime's metrics.
type memorySample struct {
	allocs  uint64 // bytes allocated since the program started
	objects uint64 // bytes in heap objects, garbage included
	live    uint64 // bytes the last collection found reachable
	free    uint64 // heap pages free but still held from the system
}

// Quiet and worth it: at most quietAllocFraction of the live heap
// allocated since the previous check (a heart-beat allocates nothing), and
// at least releaseMinFraction of it (and releaseMinBytes) to give back.
// A collection costs CPU in proportion to the live heap, so it is only
// run when it gives back a good part of it, and never while the broker is
// busy, when the collector runs anyway.
const (
	quietAllocFraction = 64 // live/64
	quietAllocMin      = 1 << 20
	releaseMinFraction = 4 // live/4
	releaseMinBytes    = 8 << 20
)

func newMemoryReleaser() *memoryReleaser {
	samples := []runtimemetrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	m := &memoryReleaser{release: debug.FreeOSMemory}
	m.read = func(s *memorySample) {
		runtimemetrics.Read(samples)
		v := func(i int) uint64 {
			if samples[i].Value.Kind() != runtimemetrics.KindUint64 {
				return 0 // unknown to this runtime: never worth a release
			}
			return samples[i].Value.Uint64()
		}
		*s = memorySample{allocs: v(0), objects: v(1), live: v(2), free: v(3)}
	}
	var s memorySample
	m.read(&s)
	m.allocs = s.allocs
	return m
}

// check releases memory when the broker has been quiet since the previous
// check and enough is held beyond the live heap; it says whether it did.
func (m *memoryReleaser) check() bool {
	var s memorySample
	m.read(&s)
	allocated := s.allocs - m.allocs
	m.allocs = s.allocs
	if allocated > max(quietAllocMin, s.live/quietAllocFraction) {
		return false
	}
	slack := s.free
	if s.objects > s.live {
		slack += s.objects - s.live
	}
	if slack < max(releaseMinBytes, s.live/releaseMinFraction) {
		return false
	}
	m.release()
	m.read(&s)
	m.allocs = s.allocs
	return true
}
