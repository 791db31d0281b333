package broker

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// SENDs in cluster mode: a SEND to a queue is stored in the cluster, not
// enqueued here, and gets its RECEIPT once the cluster confirms it
// (JetStream's PubAck). Outside a transaction it goes through the
// session's pipeline (session_pipeline.go) as a journaled SEND does, so a
// connection keeps many in flight and its RECEIPTs come in order; a
// COMMIT stores its queue SENDs one by one and waits. A topic message is
// handed to the cluster before the local subscribers get it, so a node
// cut off from NATS refuses it (retryable) instead of delivering it to
// half the cluster.

// clusterPublishWait bounds a waited store in the cluster; the cluster
// answers sooner (its publish timeout).
const clusterPublishWait = journalTimeout

// clusterRoute reports whether a SEND on route r is stored in the cluster.
func (b *Broker) clusterRoute(r route) bool {
	return b.cfg.Cluster != nil && r.kind == kindQueue
}

// clusterSendFrame reports whether f is a SEND outside a transaction that
// the cluster stores (pipelined like a persistent SEND).
func (b *Broker) clusterSendFrame(f *frames.Frame) bool {
	if b.cfg.Cluster == nil || f.Command != frames.CmdSend {
		return false
	}
	if _, tx := f.Header("transaction"); tx {
		return false
	}
	d, _ := f.Header("destination")
	return len(d) > len("/queue/") && string(d[:len("/queue/")]) == "/queue/"
}

// clusterError is the ERROR a producer gets for the cluster's refusal;
// nil for nil. A full queue slows the producer down under full_policy
// block (a pipelined SEND is retried); the rest is retryable.
func clusterError(err error) *stompError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClusterFull):
		return fullErr(FullCluster, "the cluster cannot take more now ("+err.Error()+")")
	}
	return &stompError{code: CodeClusterUnavailable, message: "cluster unavailable",
		detail: "The broker could not store this in its cluster (NATS JetStream), so it was not accepted: " +
			err.Error() + ". Reconnect and retry; another node may take it.",
		retryable: true, reason: CloseInternal}
}

// publishTopicClustered hands a topic message published here to the
// other nodes, before the local subscribers get it.
// It runs before anything of the SEND is journaled or delivered here, so
// a refusal leaves nothing applied; later calls for the same message do
// nothing.
func (s *Session) publishTopicClustered(name string, m *Message) *stompError {
	c := s.b.cfg.Cluster
	if c == nil || m.toCluster {
		return nil
	}
	if err := c.PublishTopic(s.space.name, name, m); err != nil {
		return clusterError(fmt.Errorf("%w: %w", ErrClusterUnavailable, err))
	}
	m.toCluster = true
	return nil
}

// publishQueueWait stores m in the cluster's queue and waits for the
// outcome (a COMMIT's SENDs). A full queue is not flow control here: the
// transaction may have stored part already, so the COMMIT fails
// (retryable) rather than wait and run again.
func (s *Session) publishQueueWait(queue string, m *Message) *stompError {
	done := make(chan error, 1)
	err := s.b.cfg.Cluster.PublishQueue(s.space.name, queue, m, ClusterDoneFunc(func(err error) { done <- err }))
	if err == nil {
		t := time.NewTimer(clusterPublishWait)
		select {
		case err = <-done:
			if errors.Is(err, ErrClusterDuplicate) {
				s.b.stats.Duplicates.Add(1)
				err = nil
			}
		case <-t.C:
			err = fmt.Errorf("%w: no confirmation within %v", ErrClusterUnavailable, clusterPublishWait)
		}
		t.Stop()
	}
	e := clusterError(err)
	if e != nil {
		e.full = NotFull
	}
	return e
}

// commitToCluster hands the cluster a COMMIT's SENDs before anything of
// the transaction is journaled or applied here: its topic messages, and
// its queue messages all at once (one connection's publishes keep their
// order), waiting for every one to be stored under one deadline. JetStream
// takes no transaction of several messages: a failure may leave the first
// ones stored (the ERROR is retryable; a retry may duplicate them).
func (s *Session) commitToCluster(ops []txOp, claims txClaims, now int64) *stompError {
	c := s.b.cfg.Cluster
	if c == nil {
		return nil
	}
	type stored struct {
		queue string // historyTarget: the topic's history
		m     *Message
		topic string
		rule  int
	}
	var queued []stored
	for i, op := range ops {
		if op.cmd != frames.CmdSend || op.msg == nil || op.msg.expired(now) || claims.dup(i) {
			continue
		}
		switch {
		case op.route.kind == kindTopic:
			if rule := s.historyRoute(op.route); rule >= 0 {
				queued = append(queued, stored{historyTarget, op.msg, op.route.key, rule})
			} else if err := s.publishTopicClustered(op.route.key, op.msg); err != nil {
				return err
			}
			// One copy per durable subscription (cluster_durable.go).
			for _, q := range s.space.durableCopies(op.route.key) {
				queued = append(queued, stored{queue: q.name, m: op.msg})
			}
		case s.b.clusterRoute(op.route):
			queued = append(queued, stored{queue: op.msg.Destination, m: op.msg})
		}
	}
	if len(queued) == 0 {
		return nil
	}
	outcomes := make(chan error, len(queued))
	done := ClusterDoneFunc(func(err error) { outcomes <- err })
	sent := 0
	var failed error
	for _, st := range queued {
		var err error
		if st.queue == historyTarget {
			err = s.publishHistoryWaiting(st.topic, st.rule, st.m, done)
		} else {
			err = c.PublishQueue(s.space.name, st.queue, st.m, done)
		}
		if err != nil {
			failed = err
			break
		}
		sent++
	}
	t := time.NewTimer(clusterPublishWait)
	defer t.Stop()
wait:
	for range sent {
		select {
		case err := <-outcomes:
			if errors.Is(err, ErrClusterDuplicate) {
				s.b.stats.Duplicates.Add(1)
			} else if err != nil && failed == nil {
				failed = err
			}
		case <-t.C:
			if failed == nil {
				failed = fmt.Errorf("%w: no confirmation within %v", ErrClusterUnavailable, clusterPublishWait)
			}
			break wait
		}
	}
	if failed != nil {
		e := clusterError(failed)
		e.full = NotFull // part of the transaction may be stored: no wait and retry of the COMMIT
		return e
	}
	for _, st := range queued {
		st.m.toCluster = true
		st.m.inHistory = st.m.inHistory || st.queue == historyTarget // delivered by the history's mirror
	}
	return nil
}

// sendClustered hands a SEND to a queue to the cluster without waiting:
// it joins the pipeline, and its RECEIPT comes once the cluster stored it.
func (s *Session) sendClustered(f *frames.Frame, r route, m *Message, claim dedupeClaim) *stompError {
	return s.pipeToCluster(f, &pipedSend{s: s, msg: m, route: r, cluster: true, size: m.size() + pipedOverhead, claim: claim})
}

// pipeToCluster hands e, the SEND f, to the cluster without waiting and
// adds it to the pipeline: its RECEIPT comes once the cluster stored it.
func (s *Session) pipeToCluster(f *frames.Frame, e *pipedSend) *stompError {
	if v, ok := f.Header("receipt"); ok {
		e.receipt, e.hasReceipt = append([]byte(nil), v...), true
	}
	s.pipeState() // before the submission: its completion uses it
	if err := e.submit(); err != nil {
		return clusterError(err)
	}
	s.pipePush(e)
	return nil
}

// ClusterDone implements ClusterDone: the cluster's outcome is handled as
// a journal's; a duplicate the cluster recognized is receipted as stored.
func (e *pipedSend) ClusterDone(err error) {
	if errors.Is(err, ErrClusterDuplicate) {
		e.s.b.stats.Duplicates.Add(1)
		err = nil
	}
	e.JournalDone(err)
}

// clusterDedupeID names a keyed SEND to the cluster: the virtual host,
// the user, the destination and the key, hashed to a fixed length (the
// key may be long and hold any byte).
func clusterDedupeID(vhost, user, dest string, key []byte) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(vhost), []byte(user), []byte(dest), key} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// submit hands e to where it is made durable: the cluster or the journal.
func (e *pipedSend) submit() error {
	if e.cluster && (e.copies != nil || e.history) {
		return e.submitCopies()
	}
	if e.cluster {
		return e.s.b.cfg.Cluster.PublishQueue(e.s.space.name, e.route.key, e.msg, e)
	}
	return e.s.b.pipelined.AppendAsync(e, e.recs...)
}

// pipeError is the ERROR for a pipelined SEND that failed.
func (e *pipedSend) pipeError() *stompError {
	if e.cluster {
		return clusterError(e.err)
	}
	return e.s.b.journalError(e.err)
}

// refusedForRoom reports whether err refused a pipelined SEND for lack of
// room (retried under full_policy block).
func refusedForRoom(err error) bool {
	return errors.Is(err, ErrJournalFull) || errors.Is(err, ErrClusterFull)
}

// historyRetryEvery is how often a COMMIT asks again to store a history
// message the cluster held back.
const historyRetryEvery = 2 * time.Millisecond

// publishHistoryWaiting is PublishHistory for a COMMIT: a refusal for
// room (the mirrors are behind, ErrClusterFull) is asked again, for up to
// clusterPublishWait, rather than failing a transaction part of which may
// be stored already; the earlier messages in flight make the room.
func (s *Session) publishHistoryWaiting(topic string, rule int, m *Message, done ClusterDone) error {
	ch := s.b.cfg.Cluster.(ClusterHistory)
	for range int(clusterPublishWait / historyRetryEvery) {
		err := ch.PublishHistory(s.space.name, topic, rule, m, done)
		if !errors.Is(err, ErrClusterFull) {
			return err
		}
		time.Sleep(historyRetryEvery)
	}
	return ch.PublishHistory(s.space.name, topic, rule, m, done)
}
