package broker

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/frames"
)

// claimParked takes the session a CONNECT's resume-token names, for a
// client authenticated as user on virtual host vhost that negotiated
// version; nil when there is none it may adopt. Whatever the reason, the
// client only learns resumed:false: no ERROR, no hint whether the token
// existed. Read loop only.
func (s *Session) claimParked(ctx context.Context, token []byte, user, vhost string, version frames.Version) *Session {
	old, result := s.b.resume.claim(ctx, token, user, vhost, version)
	if old == nil {
		s.b.resume.results[result].Add(1)
		s.b.cfg.Logger.Debug("session not resumed", "session", s.id, "remote", s.remote, "result", resumeResultNames[result])
	}
	return old
}

// mayAdopt reports whether s, just authenticated, may take over every
// subscription of the parked session old: its user's rights may have been
// narrowed since (a configuration reload that a parked session missed, a
// token with fewer claims). A resume must not deliver what a fresh
// SUBSCRIBE would be refused. Read loop only; old is claimed.
func (s *Session) mayAdopt(old *Session) bool {
	for _, sub := range old.subs {
		if sub.presence != nil && sub.presence.watch {
			if s.authorize(ActionSubscribe, kindTopic, "/topic/"+sub.presence.topic) != nil {
				return false
			}
			continue
		}
		kind, _, err := parseDestination(sub.dest)
		if err != nil {
			return false
		}
		if kind == kindTempQueue {
			continue // its own reply queue: not a matter of rights
		}
		if s.authorize(ActionSubscribe, kind, sub.dest) != nil {
			return false
		}
	}
	return true
}

// notAllowed releases a claimed session whose subscriptions the resuming
// connection's rights no longer cover.
func (t *resumeTable) notAllowed(old *Session) {
	t.results[resumeRefused].Add(1)
	t.released[parkedRefused].Add(1)
	old.releaseParked()
}

// notAdopted releases a claimed session that overflowed before it could
// be adopted.
func (t *resumeTable) notAdopted(old *Session) {
	t.results[resumeOverflow].Add(1)
	t.released[parkedOverflow].Add(1)
	old.releaseParked()
}

// appendConnectedLimits appends the limits a client should know before it
// sends (docs/compliance.md, "Limits in CONNECTED"): the largest body
// and header block a frame may have, how many subscriptions a connection
// may hold, and how long a dropped session stays resumable (ms; 0: no
// session recovery).
func (b *Broker) appendConnectedLimits(dst []byte) []byte {
	dst = append(dst, "max-body:"...)
	dst = strconv.AppendInt(dst, int64(b.cfg.Frame.MaxBody), 10)
	dst = append(dst, "\nmax-header-bytes:"...)
	dst = strconv.AppendInt(dst, int64(b.cfg.Frame.MaxHeaderBytes), 10)
	dst = append(dst, "\nmax-subscriptions:"...)
	dst = strconv.AppendInt(dst, int64(b.cfg.MaxSubscriptions), 10)
	dst = append(dst, "\nresume-grace:"...)
	dst = strconv.AppendInt(dst, max(b.resume.grace.Milliseconds(), 0), 10)
	return append(dst, '\n')
}

// appendResumeHeaders appends resume-token (when recovery is on: token
// set) and, when say is set, resumed.
func appendResumeHeaders(dst []byte, token string, resumed, say bool) []byte {
	if token != "" {
		dst = append(dst, "resume-token:"...)
		dst = append(dst, token...)
		dst = append(dst, '\n')
	}
	if say {
		dst = append(dst, "resumed:"...)
		dst = strconv.AppendBool(dst, resumed)
		dst = append(dst, '\n')
	}
	return dst
}

// resumeCollector exposes the resume table's counters at scrape time.
type resumeCollector struct {
	b                 *Broker
	parked            *prometheus.Desc
	resumes, released *prometheus.Desc
}

func newResumeCollector(b *Broker) *resumeCollector {
	return &resumeCollector{
		b:      b,
		parked: prometheus.NewDesc("stompbox_sessions_parked", "Sessions whose connection dropped, kept for a resume (session.resume_grace).", nil, nil),
		resumes: prometheus.NewDesc("stompbox_session_resumes_total",
			"CONNECT frames that presented a resume-token, by result (resumed, unknown: no such token or expired or used, refused: another user, virtual host or version, busy: being taken over, overflow: overflowed while parked).", []string{"result"}, nil),
		released: prometheus.NewDesc("stompbox_sessions_parked_released_total",
			"Parked sessions released without a resume, by reason (grace: the grace passed, overflow: outbox or budget overflowed, shutdown, refused: resumed with another STOMP version, full: not parked because session.max_parked were, replaced, per-ip, moved: handed over to another node of the cluster).", []string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *resumeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.parked
	ch <- c.resumes
	ch <- c.released
}

// Collect implements prometheus.Collector.
func (c *resumeCollector) Collect(ch chan<- prometheus.Metric) {
	t := &c.b.resume
	ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(t.parked.Load()))
	for i, name := range resumeResultNames {
		ch <- prometheus.MustNewConstMetric(c.resumes, prometheus.CounterValue, float64(t.results[i].Load()), name)
	}
	for i, name := range parkedReleaseNames {
		ch <- prometheus.MustNewConstMetric(c.released, prometheus.CounterValue, float64(t.released[i].Load()), name)
	}
}
