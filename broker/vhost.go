package broker

import (
	"net/url"
	"strings"
	"sync"
)

// space is one virtual host's destinations: queues, topics and durable
// subscriptions of different virtual hosts never meet. A session joins
// one at CONNECT (the host header) and routes only within it.
type space struct {
	b    *Broker // immutable
	name string  // immutable: the virtual host
	// journalPrefix (immutable) goes before queue names in journal
	// records: "" for the default virtual host, so journals written before
	// virtual hosts existed recover into it unchanged.
	journalPrefix string

	mu       sync.RWMutex
	queues   map[string]*queue       // guarded by mu
	index    *queueIndex             // immutable pointer: queues, sharded for lookups (queue_index.go)
	durables map[durableKey]*durable // guarded by mu
	quotas   map[string]*userQuota   // guarded by mu: per user, what MaxQueuesPerUser and MaxDurablesPerUser bound
	topics   *sublist                // immutable pointer; its own locks, after mu
	// durIndex (immutable pointer; nil unless the cluster keeps durable
	// subscriptions, cluster_durable.go) holds the durable subscriptions'
	// feeds instead of topics: their copies are stored in the cluster.
	durIndex *sublist
	hist     *historyTable // immutable pointer, nil without history rules (history.go)
	presence presenceSpace // its own lock (presence.go)

	dedupe dedupeStore // idempotency keys (dedupe.go); its own leaf lock
}

// DefaultVirtualHost is the virtual host of a broker configured without
// any, and of a CONNECT without a host header.
const DefaultVirtualHost = "/"

// vhostJournalPrefix starts the journal queue names of other virtual hosts.
const vhostJournalPrefix = "/vhost/"

func newSpace(b *Broker, name string) *space {
	sp := &space{
		b: b, name: name,
		queues:   make(map[string]*queue),
		index:    newQueueIndex(),
		topics:   newSublist(),
		durables: make(map[durableKey]*durable),
		hist:     newHistoryTable(b.historyRules),
	}
	if name != DefaultVirtualHost {
		sp.journalPrefix = vhostJournalPrefix + url.PathEscape(name)
	}
	if c := b.cfg.Cluster; c != nil {
		sp.topics.interest = func(pattern string, on bool) { c.TopicInterest(name, pattern, on) }
		sp.presence.cluster, _ = c.(ClusterPresence) // cluster_presence.go
		sp.presence.vhost = name
		if _, ok := c.(ClusterDurables); ok {
			sp.durIndex = newSublist()
		}
		if ch, ok := c.(ClusterHistory); ok && sp.hist != nil {
			sp.startMirrors(ch) // last: the mirrors deliver into sp at once
		}
	}
	return sp
}

// spaceFor picks the virtual host of a CONNECT host header. Without
// configured virtual hosts every host is the default one (a single-tenant
// broker does not care what name clients used to reach it); with them,
// the header must name one, and a missing header means the default.
func (b *Broker) spaceFor(host string) (*space, bool) {
	if len(b.cfg.VirtualHosts) == 0 {
		return b.spaces[DefaultVirtualHost], true
	}
	if host == "" {
		host = DefaultVirtualHost
	}
	sp, ok := b.spaces[host]
	return sp, ok
}

// spaceOfJournalName splits a journal queue name into its virtual host
// and the queue name within it.
func (b *Broker) spaceOfJournalName(name string) (*space, string) {
	rest, ok := strings.CutPrefix(name, vhostJournalPrefix)
	if !ok {
		return b.spaces[DefaultVirtualHost], name
	}
	escaped, queue, ok := strings.Cut(rest, "/")
	if !ok {
		return nil, name
	}
	host, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, name
	}
	return b.spaces[host], "/" + queue
}

// label is a destination's name in metric labels: prefixed with its
// virtual host unless that is the default.
func (sp *space) label(destination string) string {
	if sp.name == DefaultVirtualHost {
		return destination
	}
	return sp.name + ":" + destination
}

// journalName is the queue's name in journal records.
func (q *queue) journalName() string { return q.sp.journalPrefix + q.name }
