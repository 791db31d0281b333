package broker

import (
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// transaction holds the SEND, ACK and NACK frames between BEGIN and COMMIT.
// Everything is validated as it arrives, so COMMIT cannot fail half-way.
type transaction struct {
	ops     []txOp
	bytes   int
	pending map[string]txQueued // by queue key: what this transaction will add
}

// txQueued is what a transaction holds for one queue.
type txQueued struct{ messages, bytes int }

type txOp struct {
	cmd   frames.Command
	msg   *Message // SEND; nil if it expired before it was sent
	route route
	ack   ackTarget // ACK, NACK
}

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
		return nil, protocolErr(CodeUnknownTransaction, "unknown transaction",
			"No open transaction "+strconv.Quote(truncateString(string(id), 64))+" on this connection.")
	}
	return tx, nil
}

// addToTransaction records op in the transaction the frame names.
func (s *Session) addToTransaction(f *frames.Frame, id []byte, op txOp) *stompError {
	tx, err := s.openTransaction(id)
	if err != nil {
		return err
	}
	size := 64
	if op.msg != nil {
		size = op.msg.size()
	}
	if len(tx.ops) >= s.b.cfg.MaxTransactionFrames || tx.bytes+size > s.b.cfg.MaxQueueBytes {
		return connLimitErr("transaction " + strconv.Quote(string(id)) + " holds its limit of " +
			strconv.Itoa(s.b.cfg.MaxTransactionFrames) + " frames or " + strconv.Itoa(s.b.cfg.MaxQueueBytes) + " bytes")
	}
	if op.msg != nil {
		if q := s.routeQueue(op.route); q != nil {
			held := tx.pending[op.route.key]
			if err := q.room(held.messages+1, held.bytes+size); err != nil {
				return err
			}
			if tx.pending == nil {
				tx.pending = make(map[string]txQueued)
			}
			tx.pending[op.route.key] = txQueued{messages: held.messages + 1, bytes: held.bytes + size}
		}
	}
	tx.ops = append(tx.ops, op)
	tx.bytes += size
	s.receipt(f)
	return nil
}

// handleCommit applies the transaction's frames in order. Queue limits were
// checked when each SEND arrived (counting what the transaction itself
// holds); at COMMIT they are not checked again, so a commit never applies
// half of a transaction. Concurrent transactions can therefore take a queue
// past its limit by at most what they hold, which MaxTransactions,
// MaxTransactionFrames and MaxQueueBytes bound.
func (s *Session) handleCommit(f *frames.Frame) *stompError {
	id, tx, err := s.txFor(f)
	if err != nil {
		return err
	}
	delete(s.txs, id)
	if err := validateAcks(tx.ops); err != nil {
		return err
	}
	now := s.b.nowMs()
	// The transaction's persistent messages reach the journal in one append:
	// all of them survive a crash after the RECEIPT, or none was accepted.
	var recs []JournalRecord
	for _, op := range tx.ops {
		if op.cmd == frames.CmdSend && op.msg != nil && !op.msg.expired(now) {
			recs = s.space.persistRecords(op.route, op.msg, recs)
		}
	}
	if len(recs) > 0 {
		if err := s.b.journalAppend(recs...); err != nil {
			return err
		}
	}
	for _, op := range tx.ops {
		switch {
		case op.cmd == frames.CmdSend && op.msg != nil:
			if op.msg.expired(now) {
				s.b.stats.Expired.Add(1)
				continue
			}
			if err := s.deliverRoute(op.route, op.msg, false); err != nil {
				return err
			}
			s.b.stats.Published.Add(1)
		case op.cmd == frames.CmdAck || op.cmd == frames.CmdNack:
			if err := s.applyAck(op.cmd, op.ack); err != nil {
				return err
			}
		}
	}
	s.receipt(f)
	return nil
}

func (s *Session) handleAbort(f *frames.Frame) *stompError {
	id, _, err := s.txFor(f)
	if err != nil {
		return err
	}
	delete(s.txs, id)
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
