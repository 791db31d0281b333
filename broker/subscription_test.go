package broker

import (
	"slices"
	"testing"
)

func TestParseAckMode(t *testing.T) {
	tests := []struct {
		value   string
		present bool
		want    ackMode
		ok      bool
	}{
		{"", false, ackAuto, true},
		{"auto", true, ackAuto, true},
		{"client", true, ackClient, true},
		{"client-individual", true, ackClientIndividual, true},
		{"", true, 0, false},
		{"Client", true, 0, false},
		{"individual", true, 0, false},
		{"client ", true, 0, false},
	}
	for _, tc := range tests {
		got, ok := parseAckMode([]byte(tc.value), tc.present)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseAckMode(%q, %v) = %v, %v; want %v, %v", tc.value, tc.present, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSubscriptionTake(t *testing.T) {
	ids := func(ds []delivery) []uint64 {
		var out []uint64
		for _, d := range ds {
			out = append(out, d.ackID)
		}
		return out
	}
	tests := []struct {
		name       string
		ackID      uint64
		cumulative bool
		found      bool
		took, left []uint64
	}{
		{"individual middle", 5, false, true, []uint64{5}, []uint64{2, 3, 7, 9}},
		{"individual first", 2, false, true, []uint64{2}, []uint64{3, 5, 7, 9}},
		{"individual last", 9, false, true, []uint64{9}, []uint64{2, 3, 5, 7}},
		{"cumulative middle", 5, true, true, []uint64{2, 3, 5}, []uint64{7, 9}},
		{"cumulative first", 2, true, true, []uint64{2}, []uint64{3, 5, 7, 9}},
		{"cumulative last", 9, true, true, []uint64{2, 3, 5, 7, 9}, nil},
		{"unknown between", 4, true, false, nil, []uint64{2, 3, 5, 7, 9}},
		{"unknown above", 10, false, false, nil, []uint64{2, 3, 5, 7, 9}},
		{"unknown zero", 0, false, false, nil, []uint64{2, 3, 5, 7, 9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Topic deliveries (qm nil) are charged to the session's budget
			// until taken.
			sub := &subscription{session: &Session{}}
			for _, id := range []uint64{2, 3, 5, 7, 9} {
				m := &Message{ID: "m"}
				sub.unacked = append(sub.unacked, delivery{ackID: id, msg: m})
				sub.session.budget.force(m.size())
			}
			took, found := sub.take(tc.ackID, tc.cumulative, nil)
			if found != tc.found || !slices.Equal(ids(took), tc.took) || !slices.Equal(ids(sub.unacked), tc.left) {
				t.Fatalf("took %v found %v left %v; want %v %v %v", ids(took), found, ids(sub.unacked), tc.took, tc.found, tc.left)
			}
			if got, want := sub.session.budget.held(), int64(len(tc.left)*(&Message{ID: "m"}).size()); got != want {
				t.Fatalf("budget holds %d after take, want %d", got, want)
			}
			// Slots past the new length are cleared so taken messages can
			// be collected.
			for _, d := range sub.unacked[len(sub.unacked):cap(sub.unacked)] {
				if d.msg != nil {
					t.Fatal("a taken delivery is still referenced past the slice length")
				}
			}
			if found {
				if _, again := sub.take(tc.ackID, tc.cumulative, nil); again {
					t.Fatal("the same ack id was taken twice")
				}
			}
		})
	}
}
