package frames

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"time"
)

// HeartBeat is the value of a heart-beat header, "<send>,<receive>" in
// milliseconds. STOMP 1.2, Heart-beating: the first number is "the smallest
// number of milliseconds between heart-beats that the sender can guarantee"
// (0: it cannot send heart-beats); the second is "the desired number of
// milliseconds between heart-beats" it receives (0: it does not want any).
type HeartBeat struct {
	Send    time.Duration
	Receive time.Duration
}

// maxHeartBeatMillis bounds each number so that any accepted value fits a
// time.Duration and a timer; about 24.8 days.
const maxHeartBeatMillis = math.MaxInt32

// ParseHeartBeat parses a heart-beat header value such as "10000,10000".
// Spaces around each number are tolerated.
func ParseHeartBeat(value []byte) (HeartBeat, error) {
	comma := bytes.IndexByte(value, ',')
	if comma < 0 {
		return HeartBeat{}, fmt.Errorf("%w: %q has no comma", ErrBadHeartBeat, truncate(value))
	}
	send, err := parseMillis(value[:comma])
	if err != nil {
		return HeartBeat{}, err
	}
	receive, err := parseMillis(value[comma+1:])
	if err != nil {
		return HeartBeat{}, err
	}
	return HeartBeat{Send: send, Receive: receive}, nil
}

func parseMillis(b []byte) (time.Duration, error) {
	b = bytes.TrimSpace(b)
	n, valid, over := parseDecimal(b, maxHeartBeatMillis)
	switch {
	case !valid:
		return 0, fmt.Errorf("%w: %q is not a non-negative integer", ErrBadHeartBeat, truncate(b))
	case over:
		return 0, fmt.Errorf("%w: %q exceeds %d ms", ErrBadHeartBeat, truncate(b), maxHeartBeatMillis)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// AppendHeartBeat appends hb as a heart-beat header value, in whole
// milliseconds (rounded up, so a non-zero interval never becomes 0).
func AppendHeartBeat(dst []byte, hb HeartBeat) []byte {
	dst = strconv.AppendInt(dst, ceilMillis(hb.Send), 10)
	dst = append(dst, ',')
	return strconv.AppendInt(dst, ceilMillis(hb.Receive), 10)
}

func ceilMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// NegotiateHeartBeat applies STOMP 1.2, Heart-beating, from one side's point
// of view: local is what this side announced, remote what the peer announced.
// send is how often this side must send heart-beats and expect how often it
// should hear from the peer; 0 means none. For each direction the interval is
// the larger of the sender's guarantee and the receiver's wish, and none at
// all when either is 0.
func NegotiateHeartBeat(local, remote HeartBeat) (send, expect time.Duration) {
	return negotiated(local.Send, remote.Receive), negotiated(remote.Send, local.Receive)
}

func negotiated(canSend, wants time.Duration) time.Duration {
	if canSend <= 0 || wants <= 0 {
		return 0
	}
	return max(canSend, wants)
}
