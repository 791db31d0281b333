package frames

// Command is a STOMP frame command. The zero value is CmdUnknown.
type Command uint8

// The commands of STOMP 1.2 (client frames, then server frames).
const (
	CmdUnknown Command = iota
	CmdConnect
	CmdStomp
	CmdSend
	CmdSubscribe
	CmdUnsubscribe
	CmdAck
	CmdNack
	CmdBegin
	CmdCommit
	CmdAbort
	CmdDisconnect
	CmdConnected
	CmdMessage
	CmdReceipt
	CmdError
	commandCount
)

// NumCommands is one past the largest Command: an array indexed by Command
// (per-command counters, say) has this length.
const NumCommands = int(commandCount)

var commandNames = [commandCount]string{
	CmdUnknown:     "UNKNOWN",
	CmdConnect:     "CONNECT",
	CmdStomp:       "STOMP",
	CmdSend:        "SEND",
	CmdSubscribe:   "SUBSCRIBE",
	CmdUnsubscribe: "UNSUBSCRIBE",
	CmdAck:         "ACK",
	CmdNack:        "NACK",
	CmdBegin:       "BEGIN",
	CmdCommit:      "COMMIT",
	CmdAbort:       "ABORT",
	CmdDisconnect:  "DISCONNECT",
	CmdConnected:   "CONNECTED",
	CmdMessage:     "MESSAGE",
	CmdReceipt:     "RECEIPT",
	CmdError:       "ERROR",
}

// String returns the command as written on the wire ("UNKNOWN" for values
// that are not a STOMP command).
func (c Command) String() string {
	if c >= commandCount {
		return commandNames[CmdUnknown]
	}
	return commandNames[c]
}

// ParseCommand maps a command line (without its EOL) to a Command. Commands
// are case-sensitive, as in the specification. It does not allocate.
func ParseCommand(line []byte) Command {
	switch string(line) { // the compiler does not allocate for this conversion
	case "SEND":
		return CmdSend
	case "MESSAGE":
		return CmdMessage
	case "ACK":
		return CmdAck
	case "NACK":
		return CmdNack
	case "SUBSCRIBE":
		return CmdSubscribe
	case "UNSUBSCRIBE":
		return CmdUnsubscribe
	case "BEGIN":
		return CmdBegin
	case "COMMIT":
		return CmdCommit
	case "ABORT":
		return CmdAbort
	case "RECEIPT":
		return CmdReceipt
	case "CONNECT":
		return CmdConnect
	case "STOMP":
		return CmdStomp
	case "CONNECTED":
		return CmdConnected
	case "DISCONNECT":
		return CmdDisconnect
	case "ERROR":
		return CmdError
	}
	return CmdUnknown
}

// FromClient reports whether a client may send c to a server.
func (c Command) FromClient() bool {
	return c >= CmdConnect && c <= CmdDisconnect
}

// HasBody reports whether frames with command c may carry a body. STOMP 1.2:
// "Only the SEND, MESSAGE, and ERROR frames MAY have a body."
func (c Command) HasBody() bool {
	return c == CmdSend || c == CmdMessage || c == CmdError
}
