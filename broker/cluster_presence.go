package broker

// Presence across the nodes of a cluster (docs/cluster.md "Presence"). A
// presence set's members may be held by several nodes at once: this node
// (presenceMember.refs, or its grace period) and any number of others
// (presenceSet.remote, one entry per member and node). The set shows the merged
// view: a member is present while any node holds it, counted once, and
// this node's watchers get a join when it first appears anywhere, a leave
// when the last node lets it go, and a join when its info changes. So a
// member that reconnects to another node within presence.grace makes no
// event: the node it left still holds it (grace period) when the new one
// starts to.
//
// This node tells the cluster when it starts or stops holding a member
// (ClusterPresence.PresenceChanged, under presenceSpace.mu); the cluster
// tells it what the other nodes hold through Broker.ApplyRemotePresence.
// Remote members count against presence.max_members and their sets
// against presence.max_sets, so what other nodes report is bounded here as
// local members are.

// ClusterPresence is implemented by a Cluster that shares presence sets
// across nodes; the broker uses it when Config.Cluster implements it.
type ClusterPresence interface {
	// PresenceChanged says this node now holds member m of the presence
	// set of topic set (a topic name, without /topic/) in vhost (present:
	// it joined here, or its info changed) or no longer holds it (its
	// last presence subscription here ended and its grace period passed).
	// It is called under the virtual host's presence lock, in order for
	// each member, so it must not block.
	PresenceChanged(vhost, set string, m PresenceMember, present bool)
}

// PresenceMember is one member of a presence set as nodes share it.
type PresenceMember struct {
	User string // the Principal's name
	ID   string // its presence-id; "" without one (one member per user)
	Info string // its presence-info
}

// heldLocally reports whether this node holds m: a presence subscription,
// or a grace period running. Under presenceSpace.mu.
func (m *presenceMember) heldLocally() bool { return m.refs > 0 || !m.leaveAt.IsZero() }

// holdersLocked returns the other nodes holding member key of s (node ->
// info), made if need be. Under presenceSpace.mu.
func (s *presenceSet) holdersLocked(key presenceKey) map[string]string {
	if s.remote == nil {
		s.remote = make(map[presenceKey]map[string]string)
	}
	h := s.remote[key]
	if h == nil {
		h = make(map[string]string, 1)
		s.remote[key] = h
	}
	return h
}

// toClusterLocked tells the cluster (if any) that this node now holds m
// (present) or no longer does. Under presenceSpace.mu.
func (ps *presenceSpace) toClusterLocked(set *presenceSet, m *presenceMember, present bool) {
	if ps.cluster == nil {
		return
	}
	ps.cluster.PresenceChanged(ps.vhost, set.name,
		PresenceMember{User: m.key.user, ID: m.key.id, Info: m.info}, present)
}

// MaxPresenceHolders bounds the other nodes holding one presence member
// that a node keeps track of: far more than a cluster has nodes, so only a
// buggy or hostile writer of the presence bucket reaches it.
const MaxPresenceHolders = 64

// ApplyRemotePresence applies what node, another node of the cluster, says
// of member m of the presence set of topic set in vhost: it holds m
// (present; again with the same info is a refresh and changes nothing) or
// no longer does. The merged set changes, with events to this node's
// watchers, only when m appears, leaves (no node holds it any more) or its
// info changes.
//
// It reports whether this node keeps node's hold on m: false for an
// unknown virtual host, a broker without a presence-sharing cluster, a
// member past the local bounds (presence-id, presence-info, destination
// length) or a set or virtual host at presence.max_members or
// presence.max_sets; the cluster may offer it again later (at its next
// refresh), or one already held by MaxPresenceHolders other nodes. For
// present false it reports true. Safe from any goroutine; it does not
// block on anything but the virtual host's presence lock.
func (b *Broker) ApplyRemotePresence(vhost, set, node string, m PresenceMember, present bool) bool {
	sp := b.spaces[vhost]
	if sp == nil || sp.presence.cluster == nil {
		return false
	}
	ps := &sp.presence
	key := presenceKey{user: m.User, id: m.ID}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !present {
		s := ps.sets[set]
		if s == nil {
			return true
		}
		mem := s.members[key]
		if mem == nil {
			return true
		}
		holders := s.remote[key]
		if _, held := holders[node]; !held {
			return true
		}
		delete(holders, node)
		if len(holders) == 0 {
			delete(s.remote, key)
			if !mem.heldLocally() {
				ps.removeLocked(b, s, mem)
			}
		}
		return true
	}
	if set == "" || isWildcard(set) || len(presencePrefix)+len(set) > maxDestinationLength ||
		len(m.ID) > b.cfg.MaxIDLength || len(m.Info) > MaxPresenceInfo || len(m.User) > MaxPresenceInfo {
		return false
	}
	s, err := ps.setLocked(b, set)
	if err != nil {
		return false
	}
	mem := s.members[key]
	if mem == nil {
		if len(s.members) >= b.cfg.MaxPresenceMembers {
			ps.dropIfEmptyLocked(s)
			return false
		}
		mem = &presenceMember{key: key, info: m.Info}
		s.holdersLocked(key)[node] = m.Info
		s.members[key] = mem
		ps.members.Add(1)
		ps.emitLocked(b, s, presenceJoin, mem)
		return true
	}
	holders := s.holdersLocked(key)
	old, held := holders[node]
	if held && old == m.Info {
		return true // a refresh
	}
	if !held && len(holders) >= MaxPresenceHolders {
		return false // more nodes than a cluster has: a buggy or hostile writer
	}
	holders[node] = m.Info
	if mem.info != m.Info {
		mem.info = m.Info
		ps.emitLocked(b, s, presenceJoin, mem)
	}
	return true
}
