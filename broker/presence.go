package broker

import (
	"cmp"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// Presence (issue 13, docs/compliance.md "Presence"): a SUBSCRIBE to an
// exact topic with presence:true makes its client a member of that topic's
// presence set, and a SUBSCRIBE to /presence/<name> streams the set: a
// snapshot first, then join and leave events. A member whose last presence
// subscription ended leaves only after Config.PresenceGrace, so a client
// that reconnects within it neither leaves nor joins again.
//
// Each virtual host keeps its sets under one mutex, presenceSpace.mu. Every
// change of a set and the delivery of the event it makes happen under it,
// which gives each watcher the events in the order they happened and lets a
// new watcher take its snapshot and start watching in one step (nothing
// lost or repeated between them). Delivering is a non-blocking push per
// watcher (subscription.mu, then outbox.mu, after presenceSpace.mu); no
// publisher of a topic ever takes presenceSpace.mu (docs/locking.md).

// MaxPresenceInfo bounds a presence-info header value (bytes): what a
// member may say about itself (a display name), not a data channel.
const MaxPresenceInfo = 1024

// presencePrefix starts the destinations that stream a topic's presence set.
const presencePrefix = "/presence/"

// The presence-event header values, also the event label of the metrics.
type presenceEvent uint8

const (
	presenceSnapshot presenceEvent = iota
	presenceJoin
	presenceLeave
	presenceEventCount
)

var presenceEventNames = [presenceEventCount]string{"snapshot", "join", "leave"}

// presenceKey identifies a member within a set: its user (the Principal's
// name) and its presence-id ("" without one: one member per user).
type presenceKey struct{ user, id string }

// presenceMember is one member of a set. All fields are guarded by the
// presenceSpace's mu.
type presenceMember struct {
	key  presenceKey
	info string
	// refs counts the presence subscriptions that hold the member (several
	// connections of one user without presence-id, a resumed session...).
	refs int
	// leaveAt, while refs is 0, is when the member leaves unless it comes
	// back first; it is then in presenceSpace.pending.
	leaveAt time.Time
}

// presenceSet is one topic's members and the subscriptions watching them.
// All fields but name and dest are guarded by the presenceSpace's mu.
type presenceSet struct {
	name     string // immutable: the topic name without /topic/
	dest     string // immutable: /presence/<name>, the destination of its events
	members  map[presenceKey]*presenceMember
	watchers map[*subscription]struct{}
	// remote (cluster mode only, else nil) holds, for each member other
	// nodes hold, the info each of them reported (cluster_presence.go): a
	// member is present while it is held here (refs or a grace period) or
	// there. Kept by set rather than by member, so a single node's members
	// cost nothing more.
	remote map[presenceKey]map[string]string
}

// presenceSpace is one virtual host's presence sets.
type presenceSpace struct {
	mu      sync.Mutex
	sets    map[string]*presenceSet           // guarded by mu: by topic name
	pending map[*presenceMember]*presenceSet  // guarded by mu: members in their grace period, with their set
	members atomic.Int64                      // members of all sets, pending ones included (metrics)
	events  [presenceEventCount]atomic.Uint64 // events by kind (metrics)
	// cluster (immutable; nil without a cluster, or one without presence)
	// shares the sets with other nodes, and vhost names this virtual host
	// to it (cluster_presence.go).
	cluster ClusterPresence
	vhost   string
}

// presenceLink ties a subscription to the set it joins or watches. It is
// set once the subscription is accepted and read by its read loop only.
type presenceLink struct {
	topic string      // the topic name without /topic/
	watch bool        // a /presence/ subscription rather than a member
	key   presenceKey // member only
	info  string      // member only: its presence-info
	// charged (member only) is what the subscription charged to its
	// connection's budget: its presence-info and presence-id.
	charged int
	// away (member only; read loop of the session holding it) says the
	// session is parked: its connection dropped, so the member's
	// subscription was released and its grace period runs, though the
	// subscription itself lives on for a resume.
	away bool
}

// presenceTopic returns the topic name a /presence/ destination streams.
func presenceTopic(dest string) (string, bool) {
	return strings.CutPrefix(dest, presencePrefix)
}

// setLocked returns the set of topic, created if need be within
// Config.MaxPresenceSets.
func (ps *presenceSpace) setLocked(b *Broker, topic string) (*presenceSet, *stompError) {
	if set := ps.sets[topic]; set != nil {
		return set, nil
	}
	if len(ps.sets) >= b.cfg.MaxPresenceSets {
		return nil, presenceLimitErr("this virtual host has its limit of " + strconv.Itoa(b.cfg.MaxPresenceSets) +
			" presence sets (topics with members or watchers)")
	}
	if ps.sets == nil {
		ps.sets = make(map[string]*presenceSet)
		ps.pending = make(map[*presenceMember]*presenceSet)
	}
	set := &presenceSet{name: topic, dest: presencePrefix + topic,
		members: make(map[presenceKey]*presenceMember), watchers: make(map[*subscription]struct{})}
	ps.sets[topic] = set
	return set, nil
}

// dropIfEmptyLocked forgets a set with no member (pending ones included)
// and no watcher.
func (ps *presenceSpace) dropIfEmptyLocked(set *presenceSet) {
	if len(set.members) == 0 && len(set.watchers) == 0 && ps.sets[set.name] == set {
		delete(ps.sets, set.name)
	}
}

// joinLocked adds one presence subscription to the member key of set: a
// new member joins (a join event); a member still present or in its grace
// period stays, with no event unless its info changed (then a join event
// carries the new info).
func (ps *presenceSpace) joinLocked(b *Broker, set *presenceSet, key presenceKey, info string) *stompError {
	m := set.members[key]
	if m == nil {
		if len(set.members) >= b.cfg.MaxPresenceMembers {
			return presenceLimitErr("presence set " + truncateString(set.name, 64) + " has its limit of " +
				strconv.Itoa(b.cfg.MaxPresenceMembers) + " members")
		}
		m = &presenceMember{key: key, info: info, refs: 1}
		set.members[key] = m
		ps.members.Add(1)
		ps.emitLocked(b, set, presenceJoin, m)
		ps.toClusterLocked(set, m, true)
		return nil
	}
	held := m.heldLocally()
	if m.refs == 0 && held { // back within its grace period: it never left
		delete(ps.pending, m)
		m.leaveAt = time.Time{}
	}
	m.refs++
	if m.info != info {
		m.info = info
		ps.emitLocked(b, set, presenceJoin, m)
	} else if held {
		return nil
	}
	// Held only by other nodes until now, or with new info: the cluster
	// learns that this node holds it (as it says).
	ps.toClusterLocked(set, m, true)
	return nil
}

// releaseLocked ends one presence subscription of member key of set. The
// last one starts its grace period (a negative Config.PresenceGrace: it
// leaves at once).
func (ps *presenceSpace) releaseLocked(b *Broker, set *presenceSet, key presenceKey) {
	m := set.members[key]
	if m == nil || m.refs == 0 {
		return
	}
	m.refs--
	if m.refs > 0 {
		return
	}
	if b.cfg.PresenceGrace < 0 {
		ps.leaveLocked(b, set, m)
		return
	}
	m.leaveAt = b.cfg.Now().Add(b.cfg.PresenceGrace)
	ps.pending[m] = set
}

// leaveLocked ends this node's hold on m: m leaves set (a leave event)
// unless another node of the cluster holds it too. It reports whether m
// left.
func (ps *presenceSpace) leaveLocked(b *Broker, set *presenceSet, m *presenceMember) bool {
	if ps.cluster != nil {
		m.leaveAt = time.Time{}
		ps.toClusterLocked(set, m, false)
		if len(set.remote[m.key]) > 0 {
			return false // still present on another node: no event
		}
	}
	ps.removeLocked(b, set, m)
	return true
}

// removeLocked removes m from set: a leave event.
func (ps *presenceSpace) removeLocked(b *Broker, set *presenceSet, m *presenceMember) {
	delete(set.members, m.key)
	ps.members.Add(-1)
	ps.emitLocked(b, set, presenceLeave, m)
	ps.dropIfEmptyLocked(set)
}

// sweep lets every member whose grace period ended by now leave; it
// returns how many left.
func (ps *presenceSpace) sweep(b *Broker, now time.Time) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	left := 0
	for m, set := range ps.pending {
		if now.Before(m.leaveAt) {
			continue
		}
		delete(ps.pending, m)
		if ps.leaveLocked(b, set, m) {
			left++
		}
	}
	return left
}

// SweepPresence lets the presence members whose grace period
// (Config.PresenceGrace) ended by now leave, sending their leave events,
// and returns how many left. The broker starts no timers for it: package
// server calls it periodically from its sweeper (PresenceSweepInterval).
func (b *Broker) SweepPresence(now time.Time) int {
	left := 0
	for _, sp := range b.spaces {
		left += sp.presence.sweep(b, now)
	}
	return left
}

// PresenceSweepInterval is how often SweepPresence should run so that a
// member leaves at most a tenth of the grace period (and never more than a
// second) late; 0 when members leave at once (no grace period).
func (b *Broker) PresenceSweepInterval() time.Duration {
	if b.cfg.PresenceGrace < 0 {
		return 0
	}
	return min(max(b.cfg.PresenceGrace/10, 50*time.Millisecond), time.Second)
}

// emitLocked counts an event of set and delivers it to every watcher.
func (ps *presenceSpace) emitLocked(b *Broker, set *presenceSet, ev presenceEvent, m *presenceMember) {
	ps.events[ev].Add(1)
	if len(set.watchers) == 0 {
		return
	}
	msg := presenceMessage(b, set.dest, ev, appendMemberJSON(nil, m))
	for w := range set.watchers {
		w.deliverTopic(msg) // never blocks: a watcher that cannot take it is a slow consumer
	}
}

// snapshotLocked is the snapshot event of set, members ordered by user then
// presence-id.
func (ps *presenceSpace) snapshotLocked(b *Broker, set *presenceSet) *Message {
	ps.events[presenceSnapshot].Add(1)
	members := make([]*presenceMember, 0, len(set.members))
	for _, m := range set.members {
		members = append(members, m)
	}
	slices.SortFunc(members, func(x, y *presenceMember) int {
		return cmp.Or(strings.Compare(x.key.user, y.key.user), strings.Compare(x.key.id, y.key.id))
	})
	body := append(make([]byte, 0, 64*len(members)+16), `{"members":[`...)
	for i, m := range members {
		if i > 0 {
			body = append(body, ',')
		}
		body = appendMemberJSON(body, m)
	}
	body = append(body, "]}"...)
	return presenceMessage(b, set.dest, presenceSnapshot, body)
}

// memberJSON is one member as presence events show it. Strings that are not
// valid UTF-8 come out with U+FFFD in place of the bad bytes, so a body is
// always valid JSON (and valid UTF-8: a text WebSocket message).
type memberJSON struct {
	User string `json:"user"`
	ID   string `json:"id"`
	Info string `json:"info"`
}

// appendMemberJSON appends {"user":..,"id":..,"info":..} for m.
func appendMemberJSON(dst []byte, m *presenceMember) []byte {
	return appendPresenceJSON(dst, m.key.user, m.key.id, m.info)
}

func appendPresenceJSON(dst []byte, user, id, info string) []byte {
	b, err := json.Marshal(memberJSON{User: user, ID: id, Info: info})
	if err != nil {
		panic("broker: encoding a presence member: " + err.Error()) // three strings always encode
	}
	return append(dst, b...)
}

// The header keys of presence events, shared by every event.
var (
	headerDestination   = []byte("destination")
	headerContentType   = []byte("content-type")
	headerPresenceEvent = []byte("presence-event")
	valueJSON           = []byte("application/json")
	presenceEventValues = [presenceEventCount][]byte{[]byte("snapshot"), []byte("join"), []byte("leave")}
)

// presenceMessage builds one presence event: a MESSAGE to dest with
// content-type application/json and presence-event ev.
func presenceMessage(b *Broker, dest string, ev presenceEvent, body []byte) *Message {
	m := &Message{ID: b.newMessageID(), Destination: dest, Body: body, Headers: []frames.Header{
		{Key: headerDestination, Value: []byte(dest)},
		{Key: headerContentType, Value: valueJSON},
		{Key: headerPresenceEvent, Value: presenceEventValues[ev]},
	}}
	m.enc12 = appendHeaders12(nil, m.Headers)
	m.markText()
	return m
}

// presenceLimitErr is the ERROR for a full presence set or a virtual host
// with its limit of sets: retryable, since members leave.
func presenceLimitErr(detail string) *stompError {
	return &stompError{code: CodeLimitExceeded, message: "limit exceeded",
		detail:    detail + "; retry later, or ask the operator to raise presence.max_members or presence.max_sets.",
		retryable: true, reason: CloseLimitExceeded}
}
