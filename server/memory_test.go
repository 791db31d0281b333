package server

import "testing"

func TestMemoryReleaserReleasesOnlyWhenQuietAndWorthIt(t *testing.T) {
	const mb = 1 << 20
	tests := []struct {
		name          string
		allocated     uint64 // since the previous check
		objects, live uint64
		free          uint64
		wantRelease   bool
		// thenRelease: a second check, nothing allocated in between.
		thenRelease bool
	}{
		{name: "burst still going", allocated: 64 * mb, objects: 200 * mb, live: 100 * mb, free: 50 * mb, thenRelease: true},
		{name: "quiet, garbage of a burst", allocated: 100 << 10, objects: 190 * mb, live: 100 * mb, free: 10 * mb, wantRelease: true},
		{name: "quiet, pages held free", allocated: 0, objects: 100 * mb, live: 100 * mb, free: 30 * mb, wantRelease: true},
		{name: "quiet, little to give back", allocated: 0, objects: 110 * mb, live: 100 * mb, free: 10 * mb},
		{name: "quiet, small heap", allocated: 0, objects: 6 * mb, live: 1 * mb, free: 1 * mb},
		{name: "heart-beats only, large heap", allocated: 1 * mb, objects: 4000 * mb, live: 2000 * mb, free: 1000 * mb, wantRelease: true},
		{name: "just past quiet", allocated: 2000*mb/64 + 1, objects: 4000 * mb, live: 2000 * mb, free: 1000 * mb, thenRelease: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := memorySample{allocs: 1000*mb + tt.allocated, objects: tt.objects, live: tt.live, free: tt.free}
			released := 0
			m := &memoryReleaser{
				allocs: 1000 * mb,
				read:   func(s *memorySample) { *s = cur },
				release: func() {
					released++
					cur.objects, cur.free = cur.live, 0 // what a collection and a scavenge leave
				},
			}
			if got := m.check(); got != tt.wantRelease || released != map[bool]int{true: 1}[tt.wantRelease] {
				t.Fatalf("check() = %v with %d releases, want %v", got, released, tt.wantRelease)
			}
			if m.allocs != cur.allocs {
				t.Fatalf("allocs remembered %d, want %d", m.allocs, cur.allocs)
			}
			// A burst that has ended is released; after a release nothing
			// is left to give back.
			before := released
			if got := m.check(); got != tt.thenRelease || released-before != map[bool]int{true: 1}[tt.thenRelease] {
				t.Fatalf("second check() = %v with %d more releases, want %v", got, released-before, tt.thenRelease)
			}
		})
	}
}

// The metrics the releaser reads must exist in this runtime: a name it
// does not know reads as 0, and the releaser would never release.
func TestMemoryReleaserReadsTheRuntime(t *testing.T) {
	keep := make([][]byte, 0, 64)
	for range 64 {
		keep = append(keep, make([]byte, 64<<10))
	}
	m := newMemoryReleaser()
	var s memorySample
	m.read(&s)
	if s.allocs < 4<<20 || s.objects < 4<<20 || s.live == 0 {
		t.Fatalf("runtime metrics read as %+v: want allocs and objects >= 4 MiB (%d buffers kept) and some live heap", s, len(keep))
	}
}
