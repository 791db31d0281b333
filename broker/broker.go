package broker

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Broker holds the destinations and routes messages between sessions. Build
// one with New; it is safe for concurrent use by any number of sessions.
type Broker struct {
	cfg Config // immutable
	// epoch (immutable) is when New ran: sessions keep the moment they
	// were accepted as a duration from it, 8 bytes rather than 24.
	epoch time.Time

	// spaces (immutable after New) are the virtual hosts, by name: the
	// default one, plus Config.VirtualHosts.
	spaces map[string]*space

	idPrefix      string // immutable: makes ids unique across restarts
	nextMessageID atomic.Uint64
	nextSessionID atomic.Uint64
	sessionCount  atomic.Int64
	queuedBytes   atomic.Int64 // all queues together, against MaxTotalQueuedBytes
	stats         Stats
	frameStripes  [counterStripes]frameCounters
	closes        closeCounters
	errors        errorCounters
	flow          flowState // blocked producers: waiters on the total, metrics (flow.go)
	// pipelined (immutable) is cfg.Journal when it can take appends
	// without waiting: persistent SENDs are then pipelined
	// (session_pipeline.go).
	pipelined PipelinedJournal
	// historyRules (immutable) are the valid Config.TopicHistory rules,
	// and hist accounts what all histories retain (history.go).
	historyRules []HistoryRule
	hist         historyBytes
	resume       resumeTable // resume tokens, parked sessions (resume.go)
}

// Stats are the broker's counters, read with Broker.Stats.
type Stats struct {
	Published    StripedCounter // messages accepted from SEND
	Delivered    StripedCounter // MESSAGE frames queued to subscribers
	Redelivered  atomic.Uint64  // of which redeliveries
	Expired      atomic.Uint64  // dropped because expires passed
	DeadLettered atomic.Uint64  // moved to a DLQ
	Dropped      atomic.Uint64  // dead-letter candidates with nowhere to go
	// DeadLetterFailures counts dead-letter moves the journal refused: the
	// message stayed in its queue, to be redelivered and tried again.
	DeadLetterFailures atomic.Uint64
	SlowConsumers      atomic.Uint64 // sessions closed as slow consumers
	Acked              atomic.Uint64 // messages acknowledged by ACK (cumulative ACKs count each)
	Nacked             atomic.Uint64 // messages refused by NACK
	Connects           atomic.Uint64 // CONNECT frames answered with CONNECTED

	// Duplicates counts SENDs not applied because their idempotency-key
	// repeated one still remembered (dedupe.go); each got its RECEIPT.
	Duplicates atomic.Uint64
}

// New builds a Broker; zero Config fields take their defaults.
func New(cfg Config) *Broker {
	var prefix [4]byte
	_, _ = rand.Read(prefix[:]) // crypto/rand never fails on supported platforms
	b := &Broker{
		cfg:      cfg.withDefaults(),
		spaces:   make(map[string]*space),
		idPrefix: hex.EncodeToString(prefix[:]),
	}
	b.epoch = b.cfg.Now()
	b.pipelined, _ = b.cfg.Journal.(PipelinedJournal)
	b.initHistory()
	b.resume.grace, b.resume.maxParked = b.cfg.ResumeGrace, int64(b.cfg.MaxParkedSessions)
	b.resume.maxPerIP = b.cfg.MaxParkedPerIP
	b.spaces[DefaultVirtualHost] = newSpace(b, DefaultVirtualHost)
	for _, name := range b.cfg.VirtualHosts {
		if b.spaces[name] == nil {
			b.spaces[name] = newSpace(b, name)
		}
	}
	if b.cfg.Registerer != nil {
		b.cfg.Registerer.MustRegister(newCollector(b))
		b.cfg.Registerer.MustRegister(newResumeCollector(b))
		b.cfg.Registerer.MustRegister(newPresenceCollector(b)) // presence_metrics.go
		b.cfg.Registerer.MustRegister(newDedupeCollector(b))   // dedupe.go
	}
	return b
}

// Stats returns the broker's live counters.
func (b *Broker) Stats() *Stats { return &b.stats }

// Config returns the configuration in force, defaults filled in.
func (b *Broker) Config() Config { return b.cfg }

// newSessionID returns a session's id and its number.
func (b *Broker) newSessionID() (string, uint64) {
	n := b.nextSessionID.Add(1)
	return b.idPrefix + "-s" + strconv.FormatUint(n, 10), n
}

func (b *Broker) newMessageID() string {
	// No byte here needs escaping in any STOMP version.
	return b.idPrefix + "-" + strconv.FormatUint(b.nextMessageID.Add(1), 10)
}

func (b *Broker) nowMs() int64 { return b.cfg.Now().UnixMilli() }

// destKind is the class of a destination; also a bounded metric label.
type destKind uint8

const (
	kindTopic      destKind = iota + 1 // /topic/<name>
	kindQueue                          // /queue/<name>
	kindTempQueue                      // /temp-queue/<name>, private to its session
	kindReplyQueue                     // /reply-queue/<session>/<name>, another session's temp queue
)

// maxDestinationLength bounds destination names (bytes).
const maxDestinationLength = 512

// parseDestination splits a destination into its class and name, rejecting
// what stompbox does not route.
func parseDestination(d string) (destKind, string, *stompError) {
	bad := func(why string) (destKind, string, *stompError) {
		return 0, "", protocolErr(CodeInvalidDestination, "invalid destination",
			"Destination "+strconv.Quote(truncateString(d, 64))+": "+why+
				" Use /topic/<name>, /queue/<name> or /temp-queue/<name>.")
	}
	if len(d) > maxDestinationLength {
		return bad("longer than " + strconv.Itoa(maxDestinationLength) + " bytes.")
	}
	var kind destKind
	var name string
	switch {
	case strings.HasPrefix(d, "/topic/"):
		kind, name = kindTopic, d[len("/topic/"):]
	case strings.HasPrefix(d, "/queue/"):
		kind, name = kindQueue, d[len("/queue/"):]
	case strings.HasPrefix(d, "/temp-queue/"):
		kind, name = kindTempQueue, d[len("/temp-queue/"):]
	case strings.HasPrefix(d, "/reply-queue/"):
		kind, name = kindReplyQueue, d[len("/reply-queue/"):]
	default:
		return bad("unknown prefix.")
	}
	if name == "" {
		return bad("empty name.")
	}
	if kind != kindTopic && strings.ContainsAny(name, "*#") {
		return bad("wildcards are only for SUBSCRIBE to topics.")
	}
	return kind, name, nil
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
