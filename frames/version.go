package frames

import "bytes"

// Version is a STOMP protocol version. The zero value is not a version.
type Version uint8

// The protocol versions stompbox speaks.
const (
	V10 Version = iota + 1
	V11
	V12
)

// String returns the version as written in accept-version and version
// headers, e.g. "1.2".
func (v Version) String() string {
	switch v {
	case V10:
		return "1.0"
	case V11:
		return "1.1"
	case V12:
		return "1.2"
	}
	return "unknown"
}

// SupportedVersions is the value of the version header of an ERROR frame that
// rejects a CONNECT for its accept-version (STOMP 1.2, "Protocol Negotiation").
const SupportedVersions = "1.0,1.1,1.2"

// NegotiateVersion picks the highest version listed in a CONNECT frame's
// accept-version value that stompbox supports. present is false when the
// header is absent, which STOMP 1.2 defines as "the client only supports
// version 1.0". ok is false when no listed version is supported.
func NegotiateVersion(acceptVersion []byte, present bool) (v Version, ok bool) {
	if !present {
		return V10, true
	}
	for len(acceptVersion) > 0 {
		item := acceptVersion
		if i := bytes.IndexByte(acceptVersion, ','); i >= 0 {
			item, acceptVersion = acceptVersion[:i], acceptVersion[i+1:]
		} else {
			acceptVersion = nil
		}
		var candidate Version
		switch string(bytes.TrimSpace(item)) {
		case "1.0":
			candidate = V10
		case "1.1":
			candidate = V11
		case "1.2":
			candidate = V12
		}
		if candidate > v {
			v = candidate
		}
	}
	return v, v != 0
}
