package broker

import "strconv"

// Per-user quotas: how many queues and durable subscriptions each user
// holds in a virtual host, against MaxQueuesPerUser and MaxDurablesPerUser,
// so that no user can take all of the virtual host's MaxQueues. The counts
// live with the tables they count (space.mu); a user holding nothing has
// no entry, so the map does not grow with every user ever seen.

// userQuota is what one user holds in one virtual host. Its counts are
// guarded by the space's mu.
type userQuota struct {
	user     string // immutable
	queues   int    // queues created (named and temporary) and not yet retired
	durables int    // durable subscriptions owned and not yet removed
}

// queueCreator is asked, under the table lock, before a queue is created:
// it refuses with an error, or returns whom the queue counts against
// (nil: nobody, for the broker's own dead-letter queues).
type queueCreator func() (*userQuota, *stompError)

// anyCreator lets the broker itself create queues (dead-letter queues),
// counted against no user.
func anyCreator() (*userQuota, *stompError) { return nil, nil }

// quotaLocked returns user's entry, creating it. sp.mu is held.
func (sp *space) quotaLocked(user string) *userQuota {
	u := sp.quotas[user]
	if u == nil {
		if sp.quotas == nil {
			sp.quotas = make(map[string]*userQuota)
		}
		u = &userQuota{user: user}
		sp.quotas[user] = u
	}
	return u
}

// dropIfEmptyLocked forgets u once it holds nothing. sp.mu is held.
func (sp *space) dropIfEmptyLocked(u *userQuota) {
	if u.queues == 0 && u.durables == 0 && sp.quotas[u.user] == u {
		delete(sp.quotas, u.user)
	}
}

// releaseQueueLocked gives back the quota of q, which has just left the
// table. sp.mu is held.
func (sp *space) releaseQueueLocked(q *queue) {
	if u := q.creator; u != nil {
		u.queues--
		sp.dropIfEmptyLocked(u)
	}
}

// releaseDurableLocked gives back the quota of d, which has just left the
// table. sp.mu is held.
func (sp *space) releaseDurableLocked(d *durable) {
	if u := d.quota; u != nil {
		u.durables--
		sp.dropIfEmptyLocked(u)
	}
}

// userLimitErr is the ERROR for a user at its quota: the same user doing
// the same thing again hits it again until something is removed.
func userLimitErr(user, what string, limit int) *stompError {
	return connLimitErr("user " + strconv.Quote(truncateString(user, 64)) + " holds its limit of " +
		strconv.Itoa(limit) + " " + what + " in this virtual host")
}

// createQueue is this connection's queueCreator: the user's queue quota,
// then the connection's own count of created destinations. sp.mu is held.
// Anonymous clients are not one user but anyone: a shared quota would let
// one of them lock all the others out, so only the connection's own count
// and the virtual host's MaxQueues bound them.
func (s *Session) createQueue() (*userQuota, *stompError) {
	return s.create(s.b.cfg.MaxQueuesPerUser, func(u *userQuota) *int { return &u.queues }, "queues")
}

// createDurable is createQueue for a durable subscription this
// connection's user will own. sp.mu is held.
func (s *Session) createDurable() (*userQuota, *stompError) {
	return s.create(s.b.cfg.MaxDurablesPerUser, func(u *userQuota) *int { return &u.durables }, "durable subscriptions")
}

// create charges one creation to the user's count (of what, within
// limit; limit <= 0: unlimited) and to the connection's. sp.mu is held.
func (s *Session) create(limit int, count func(*userQuota) *int, what string) (*userQuota, *stompError) {
	if s.principal.Anonymous {
		return nil, s.countCreation()
	}
	u := s.space.quotaLocked(s.principal.Name)
	n := count(u)
	if limit > 0 && *n >= limit {
		s.space.dropIfEmptyLocked(u)
		return nil, userLimitErr(u.user, what, limit)
	}
	if err := s.countCreation(); err != nil {
		s.space.dropIfEmptyLocked(u)
		return nil, err
	}
	*n++
	return u, nil
}

// UserQuota reports how many queues and durable subscriptions user holds
// in virtual host vhost (the counts MaxQueuesPerUser and
// MaxDurablesPerUser bound).
func (b *Broker) UserQuota(vhost, user string) (queues, durables int) {
	sp := b.spaces[vhost]
	if sp == nil {
		return 0, 0
	}
	sp.mu.RLock()
	defer sp.mu.RUnlock()
	if u := sp.quotas[user]; u != nil {
		return u.queues, u.durables
	}
	return 0, 0
}
