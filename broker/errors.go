package broker

import (
	"errors"
	"fmt"
)

// ErrSessionClosed is returned by Session.Feed once the session has ended
// (ERROR sent, DISCONNECT done, or closed by the broker): stop reading.
var ErrSessionClosed = errors.New("broker: session closed")

// CloseReason says why a connection ended. Drivers map it to WebSocket close
// codes, log fields and metric labels, so the set is small and stable.
type CloseReason uint8

// The reasons a connection ends.
const (
	ClosePeer             CloseReason = iota // the peer closed or the network failed
	CloseDisconnect                          // orderly DISCONNECT
	CloseProtocolError                       // ERROR for a protocol violation
	CloseFrameTooLarge                       // ERROR frame-too-large
	ClosePolicy                              // ERROR auth-failed or forbidden
	CloseConnectTimeout                      // no CONNECT in time
	CloseHeartbeatTimeout                    // the client went silent
	CloseSlowConsumer                        // outbound buffer overflowed
	CloseLimitExceeded                       // a broker limit refused the client
	CloseShutdown                            // the server is shutting down
	CloseInvalidData                         // the transport carried invalid data (bad UTF-8 in a WebSocket text message)
	CloseInternal                            // the server failed (e.g. the journal could not write)
	CloseTokenExpired                        // ERROR token-expired: the credentials' validity ended
	CloseTakenOver                           // ERROR session-taken-over: another connection resumed this session
	CloseOperator                            // ERROR closed-by-operator: an operator closed it (Session.CloseByOperator)
	closeReasonCount
)

var closeReasonNames = [closeReasonCount]string{
	ClosePeer:             "peer",
	CloseDisconnect:       "disconnect",
	CloseProtocolError:    "protocol-error",
	CloseFrameTooLarge:    "frame-too-large",
	ClosePolicy:           "policy",
	CloseConnectTimeout:   "connect-timeout",
	CloseHeartbeatTimeout: "heartbeat-timeout",
	CloseSlowConsumer:     "slow-consumer",
	CloseLimitExceeded:    "limit-exceeded",
	CloseShutdown:         "shutdown",
	CloseInvalidData:      "invalid-data",
	CloseInternal:         "internal",
	CloseTokenExpired:     "token-expired",
	CloseTakenOver:        "session-taken-over",
	CloseOperator:         "operator",
}

// String returns a short, stable label such as "slow-consumer".
func (r CloseReason) String() string {
	if r >= closeReasonCount {
		return "unknown"
	}
	return closeReasonNames[r]
}

// The error-code values stompbox puts in ERROR frames (docs/compliance.md).
const (
	CodeFrameTooLarge         = "frame-too-large"
	CodeMalformedFrame        = "malformed-frame"
	CodeUnknownCommand        = "unknown-command"
	CodeProtocolError         = "protocol-error"
	CodeMissingHeader         = "missing-header"
	CodeInvalidHeader         = "invalid-header"
	CodeInvalidDestination    = "invalid-destination"
	CodeDuplicateSubscription = "duplicate-subscription"
	CodeUnknownSubscription   = "unknown-subscription"
	CodeSubscriptionInUse     = "subscription-in-use"
	CodeUnknownMessage        = "unknown-message"
	CodeUnknownTransaction    = "unknown-transaction"
	CodeAuthFailed            = "auth-failed"
	CodeForbidden             = "forbidden"
	CodeUnsupportedVersion    = "unsupported-version"
	CodeConnectTimeout        = "connect-timeout"
	CodeHeartbeatTimeout      = "heartbeat-timeout"
	CodeSlowConsumer          = "slow-consumer"
	CodeLimitExceeded         = "limit-exceeded"
	CodeServerShutdown        = "server-shutdown"
	CodeUnknownHost           = "unknown-host"
	CodeInternal              = "internal-error"
	CodeTokenExpired          = "token-expired"
	CodeJournalFailed         = "journal-failed"
	CodeSessionTakenOver      = "session-taken-over"
	CodeClusterUnavailable    = "cluster-unavailable"
	CodeClosedByOperator      = "closed-by-operator"
)

// stompError is a failure the client is told about in an ERROR frame before
// the connection closes.
type stompError struct {
	code      string // error-code header
	message   string // message header: short
	detail    string // body: what happened and what to do
	retryable bool   // whether resending the same thing later can succeed
	reason    CloseReason
	// full, when set, says the frame was refused only because a bound is
	// full now: under the block policy the producer is slowed down (the
	// frame waits and is retried) instead of failed. The handler that
	// returns it must have changed nothing.
	full FullReason
	// fullQueue, with FullQueue, is the queue whose room the producer
	// waits for, and fullNeed the bytes it needs (set by queue.roomLocked).
	fullQueue *queue
	fullNeed  int

	// reconnectAfter (ms, decimal; "": none) is the reconnect-after header
	// of a server-shutdown ERROR.
	reconnectAfter string
}

// FullReason names the bound that made a producer wait; also the reason
// label of the flow-control metrics.
type FullReason uint8

// The bounds that block a producer.
const (
	NotFull     FullReason = iota
	FullQueue              // a queue's MaxQueueMessages or MaxQueueBytes
	FullTotal              // MaxTotalQueuedBytes, all queues together
	FullJournal            // the journal: its disk budget, journal.min_free or a full disk
	FullRate               // the connection's frame or byte rate
	FullBudget             // the connection's own byte budget (pending input, transactions)
	FullCluster            // a queue's stream in the cluster (its limit per queue)
	fullReasonCount
)

var fullReasonNames = [fullReasonCount]string{
	NotFull: "none", FullQueue: "queue", FullTotal: "total", FullJournal: "journal",
	FullRate: "rate", FullBudget: "budget", FullCluster: "cluster",
}

// String returns a short, stable label such as "queue".
func (r FullReason) String() string {
	if r >= fullReasonCount {
		return "unknown"
	}
	return fullReasonNames[r]
}

// fullErr is the error for input refused because bound why is full now:
// retryable, and (under the block policy) a reason to slow the producer
// down rather than to fail it.
func fullErr(why FullReason, detail string) *stompError {
	e := limitErr(detail)
	e.full = why
	return e
}

func (e *stompError) Error() string { return fmt.Sprintf("broker: %s: %s", e.code, e.message) }

// protocolErr builds the common case: a client mistake, not retryable.
func protocolErr(code, message, detail string) *stompError {
	return &stompError{code: code, message: message, detail: detail, reason: CloseProtocolError}
}
