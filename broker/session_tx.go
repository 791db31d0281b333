package broker

import (
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// transaction holds the SEND, ACK and NACK frames between BEGIN and COMMIT.
// Everything is validated as it arrives, so COMMIT cannot fail half-way: a
// SEND to a queue reserves its room there (and in the broker's total) at
// once, and its bytes are charged to the connection's budget until COMMIT
// or ABORT.
type transaction struct {
	ops   []txOp
	bytes int // charged to the session's budget
}

type txOp struct {
	cmd   frames.Command
	msg   *Message // SEND; nil if it expired before it was sent
	route route
	q     *queue    // SEND to a queue: where msg's room is reserved
	ack   ackTarget // ACK, NACK

	idemKey string // SEND: its idempotency-key ("": none), claimed at COMMIT
}

// txOpBytes is what a frame without a message (ACK, NACK, an expired SEND)
// counts in its transaction.
const txOpBytes = 64

func (s *Session) handleBegin(f *frames.Frame) *stompError {
	id, err := requireHeader(f, "transaction")
	if err != nil {
		return err
	}
	if _, dup := s.txs[string(id)]; dup {
		return protocolErr(CodeProtocolError, "transaction already begun",
			"Transaction "+strconv.Quote(truncateString(string(id), 64))+" is already open.")
	}
	if len(s.txs) >= s.b.cfg.MaxTransactions {
		return connLimitErr("this connection holds its limit of " + strconv.Itoa(s.b.cfg.MaxTransactions) + " open transactions")
	}
	if s.txs == nil {
		s.txs = make(map[string]*transaction)
	}
	s.txs[string(id)] = &transaction{}
	s.receipt(f)
	return nil
}

// txFor returns the open transaction a frame names.
func (s *Session) txFor(f *frames.Frame) (string, *transaction, *stompError) {
	id, err := requireHeader(f, "transaction")
	if err != nil {
		return "", nil, err
	}
	tx, err := s.openTransaction(id)
	return string(id), tx, err
}

func (s *Session) openTransaction(id []byte) (*transaction, *stompError) {
	tx := s.txs[string(id)]
	if tx == nil {
		e := protocolErr(CodeUnknownTransaction, "unknown transaction",
			"No open transaction "+strconv.Quote(truncateString(string(id), 64))+" on this connection.")
		if s.resumed() {
			// Its BEGIN may have been on the connection that dropped: the
			// drop aborted it (STOMP: a disconnect discards transactions),
			// and doing it again can succeed.
			e.retryable = true
			e.detail += " Transactions open when a connection drops are aborted, also when its session is resumed; begin it again."
		}
		return nil, e
	}
	return tx, nil
}

// addToTransaction records op in the transaction the frame names. A SEND
// is charged to the connection's budget and reserved in its queue (created
// if need be) before it is accepted; when either is full now, nothing is
// changed and the error says so (fullErr), so the producer can be held back
// and the frame retried.
func (s *Session) addToTransaction(f *frames.Frame, id []byte, op txOp) *stompError {
	tx, err := s.openTransaction(id)
	if err != nil {
		return err
	}
	size := txOpBytes
	if op.msg != nil {
		size = op.msg.size()
	}
	if len(tx.ops) >= s.b.cfg.MaxTransactionFrames {
		return connLimitErr("transaction " + strconv.Quote(truncateString(string(id), 64)) + " holds its limit of " +
			strconv.Itoa(s.b.cfg.MaxTransactionFrames) + " frames")
	}
	// Only COMMIT or ABORT frees what open transactions hold, and both come
	// after this frame: past the budget, waiting could never end.
	if s.txBytes()+int64(size) > s.budget.limit {
		return connLimitErr("the open transactions of this connection would hold more than its budget of " +
			strconv.FormatInt(s.budget.limit, 10) + " bytes")
	}
	if !s.budget.charge(size) {
		return fullErr(FullBudget, "this connection holds its budget of "+strconv.FormatInt(s.budget.limit, 10)+" bytes")
	}
	if op.msg != nil {
		q, err := s.reserveRoute(op.route, op.msg)
		if err != nil {
			s.budget.release(size)
			return err
		}
		op.q = q
	}
	tx.ops = append(tx.ops, op)
	tx.bytes += size
	s.receipt(f)
	return nil
}

// txBytes is what this session's open transactions hold.
func (s *Session) txBytes() int64 {
	var n int64
	for _, tx := range s.txs {
		n += int64(tx.bytes)
	}
	return n
}

// reserveRoute reserves room for m in the queue a transactional SEND goes
// to, creating the queue as a SEND would (counted against the session's
// destinations). It returns nil for a topic (checked against its durable
// subscriptions' queues instead) and for a reply queue whose requester is
// gone (the reply is dropped at COMMIT).
func (s *Session) reserveRoute(r route, m *Message) (*queue, *stompError) {
	size := m.size()
	if s.b.clusterRoute(r) {
		return nil, nil // stored in the cluster at COMMIT, which has its own limits
	}
	switch r.kind {
	case kindTopic:
		return nil, s.durableRoom(r, m)
	case kindReplyQueue:
		q, _ := s.space.queue(r.key, nil)
		if q == nil {
			return nil, nil
		}
		if err := q.reserve(size); err != nil {
			if err == errQueueDeleted {
				return nil, nil
			}
			return nil, asStompError(err)
		}
		return q, nil
	case kindTempQueue:
		existed, created := s.tempQueues[r.key] != nil, s.created
		q, err := s.tempQueue(r.key)
		if err != nil {
			return nil, err
		}
		if err := q.reserve(size); err != nil {
			if !existed { // refused as full now: leave nothing changed
				s.deleteTempQueue(r.key, q)
				s.created = created
			}
			return nil, asStompError(err)
		}
		return q, nil
	}
	for range 8 {
		created := s.created
		q, err := s.space.queue(r.key, s.createQueue)
		if err != nil {
			return nil, err
		}
		switch err := q.reserve(size); {
		case err == nil:
			return q, nil
		case err != errQueueDeleted:
			// Refused as full now, the SEND may be retried: a queue created
			// for it is removed again and not counted, so nothing changed.
			if q.retireIfIdle(); s.created > created && q.isDeleted() {
				s.created = created
			}
			return nil, asStompError(err)
		}
	}
	return nil, limitErr("queue " + r.key + " is being recreated too often")
}

// discard gives back everything tx holds: its reservations and its budget.
func (tx *transaction) discard(s *Session) {
	for _, op := range tx.ops {
		if op.q != nil {
			op.q.unreserve(op.msg.size())
		}
	}
	s.budget.release(tx.bytes)
	tx.ops, tx.bytes = nil, 0
}

// handleCommit applies the transaction's frames in order. Each SEND
// reserved its room in its queue when it arrived, so COMMIT turns the
// reservations into messages without checking limits again, and a commit
// never applies half of a transaction; open transactions, reserved, never
// take a queue past its limit.
func (s *Session) handleCommit(f *frames.Frame) *stompError {
	id, tx, err := s.txFor(f)
	if err != nil {
		return err
	}
	if err := validateAcks(tx.ops); err != nil {
		delete(s.txs, id)
		tx.discard(s)
		return err
	}
	now := s.b.nowMs()
	// Idempotency keys count at COMMIT: a SEND whose key is held already
	// (or repeats one earlier in this transaction) is left out.
	claims := s.claimTxKeys(tx.ops, now)
	if err := s.commitToCluster(tx.ops, claims, now); err != nil {
		claims.release(0)
		delete(s.txs, id)
		tx.discard(s)
		return err
	}
	// The transaction's persistent messages and the removals of the
	// persistent messages its ACKs settle reach the journal in one append,
	// before anything is applied: after the RECEIPT a crash keeps all of
	// them, and before it none (the queues do not journal those removals
	// again: applyAck is told they are journaled).
	var recs []JournalRecord
	for i, op := range tx.ops {
		if op.cmd == frames.CmdSend && op.msg != nil && !op.msg.expired(now) && !claims.dup(i) {
			recs = s.space.persistRecords(op.route, op.msg, recs)
		}
	}
	recs = ackRemovals(tx.ops, recs)
	if len(recs) > 0 {
		if err := s.b.journalAppend(recs...); err != nil {
			claims.release(0)
			if err.full != NotFull {
				// The journal is full now: the COMMIT may wait (flow
				// control) and run again, so the transaction stays open
				// and nothing changed.
				return err
			}
			delete(s.txs, id)
			tx.discard(s)
			return err
		}
	}
	delete(s.txs, id)
	s.budget.release(tx.bytes)
	tx.bytes = 0
	for i, op := range tx.ops {
		switch {
		case op.cmd == frames.CmdSend && op.msg != nil && claims.dup(i):
			if op.q != nil {
				op.q.unreserve(op.msg.size()) // a duplicate: receipted, not applied
			}
		case op.cmd == frames.CmdSend && op.msg != nil:
			if op.msg.expired(now) {
				if op.q != nil {
					op.q.unreserve(op.msg.size())
				}
				s.b.stats.Expired.Add(1)
				continue
			}
			if op.q != nil {
				op.q.enqueueReserved(op.msg)
			} else if err := s.deliverRoute(op.route, op.msg, false); err != nil {
				claims.release(i)
				tx.ops = tx.ops[i+1:]
				tx.discard(s) // what was not applied gives its reservations back
				return err
			}
			s.b.stats.Published.Add(s.stripe, 1)
			if claims != nil {
				claims[i].claim.settle()
			}
		case op.cmd == frames.CmdAck || op.cmd == frames.CmdNack:
			if err := s.applyAck(op.cmd, op.ack, true); err != nil {
				claims.release(i + 1) // the SENDs after it are not applied
				tx.ops = tx.ops[i+1:]
				tx.discard(s)
				return err
			}
		}
	}
	s.receipt(f)
	return nil
}

// ackRemovals appends to recs the removal records of the persistent queue
// messages the transaction's ACKs settle, in the order COMMIT applies them.
// validateAcks checked every ACK and NACK, and only this session's read
// loop takes its deliveries, so what is peeked here is what the ACKs take.
func ackRemovals(ops []txOp, recs []JournalRecord) []JournalRecord {
	var after map[*subscription]uint64 // highest id a cumulative ACK or NACK took so far
	var ds []delivery
	for _, op := range ops {
		if op.cmd != frames.CmdAck && op.cmd != frames.CmdNack {
			continue
		}
		t := op.ack
		cumulative := t.sub.ackMode == ackClient
		q := t.sub.queue
		if op.cmd == frames.CmdAck && q != nil && q.journaled {
			ds = t.sub.peek(t.ackID, after[t.sub], cumulative, ds[:0])
			for _, d := range ds {
				if d.qm != nil && d.msg.Persistent {
					recs = append(recs, JournalRecord{Op: OpRemove, Queue: q.journalName(), MessageID: d.msg.ID})
				}
			}
		}
		if cumulative {
			if after == nil {
				after = make(map[*subscription]uint64)
			}
			after[t.sub] = t.ackID
		}
	}
	return recs
}

func (s *Session) handleAbort(f *frames.Frame) *stompError {
	id, tx, err := s.txFor(f)
	if err != nil && err.code == CodeUnknownTransaction && s.resumed() {
		s.receipt(f) // aborted by the drop already
		return nil
	}
	if err != nil {
		return err
	}
	delete(s.txs, id)
	tx.discard(s)
	s.receipt(f)
	return nil
}

// validateAcks checks, before COMMIT applies anything, that every ACK and
// NACK of the transaction still names an unacknowledged delivery that no
// earlier frame of the same transaction settles. Only this session's read
// loop removes its deliveries, so what is checked here still holds while
// the transaction is applied.
func validateAcks(ops []txOp) *stompError {
	var cumulative map[*subscription]uint64 // highest id settled cumulatively so far
	var single map[ackTarget]bool
	for _, op := range ops {
		if op.cmd != frames.CmdAck && op.cmd != frames.CmdNack {
			continue
		}
		t := op.ack
		if !t.sub.has(t.ackID) || t.ackID <= cumulative[t.sub] || single[t] {
			return protocolErr(CodeUnknownMessage, "unknown message",
				"The transaction's "+op.cmd.String()+" names a message that is no longer unacknowledged; nothing in the transaction was applied.")
		}
		if t.sub.ackMode == ackClient {
			if cumulative == nil {
				cumulative = make(map[*subscription]uint64)
			}
			cumulative[t.sub] = t.ackID
		} else {
			if single == nil {
				single = make(map[ackTarget]bool)
			}
			single[t] = true
		}
	}
	return nil
}
