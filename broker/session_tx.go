package broker

import (
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// transaction holds the SEND, ACK and NACK frames between BEGIN and COMMIT.
// Everything is validated as it arrives, so COMMIT cannot fail half-way.
type transaction struct {
	ops   []txOp
	bytes int
}

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
		return limitErr("this connection holds its limit of " + strconv.Itoa(s.b.cfg.MaxTransactions) + " open transactions")
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
	tx := s.txs[string(id)]
	if tx == nil {
		return "", nil, protocolErr(CodeUnknownTransaction, "unknown transaction",
			"No open transaction "+strconv.Quote(truncateString(string(id), 64))+" on this connection.")
	}
	return string(id), tx, nil
}

// addToTransaction records op in the transaction the frame names.
func (s *Session) addToTransaction(f *frames.Frame, id []byte, op txOp) *stompError {
	tx := s.txs[string(id)]
	if tx == nil {
		return protocolErr(CodeUnknownTransaction, "unknown transaction",
			"No open transaction "+strconv.Quote(truncateString(string(id), 64))+" on this connection.")
	}
	size := 64
	if op.msg != nil {
		size = op.msg.size()
	}
	if len(tx.ops) >= s.b.cfg.MaxTransactionFrames || tx.bytes+size > s.b.cfg.MaxQueueBytes {
		return limitErr("transaction " + strconv.Quote(string(id)) + " holds its limit of " +
			strconv.Itoa(s.b.cfg.MaxTransactionFrames) + " frames or " + strconv.Itoa(s.b.cfg.MaxQueueBytes) + " bytes")
	}
	tx.ops = append(tx.ops, op)
	tx.bytes += size
	s.receipt(f)
	return nil
}

// handleCommit applies the transaction's frames in order. Queue limits were
// checked when each SEND arrived; at COMMIT they are not checked again, so
// a commit never applies half of a transaction.
func (s *Session) handleCommit(f *frames.Frame) *stompError {
	id, tx, err := s.txFor(f)
	if err != nil {
		return err
	}
	delete(s.txs, id)
	for _, op := range tx.ops {
		switch {
		case op.cmd == frames.CmdSend && op.msg != nil:
			if err := s.deliverRoute(op.route, op.msg, false); err != nil {
				return err
			}
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
