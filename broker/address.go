package broker

import "net/netip"

// AddressKey is the client address that per-address limits count against
// (connections and their rate, authentication failures), given a remote
// address "ip:port": the IP without the port, an IPv4-mapped IPv6 address
// as IPv4, and IPv6 grouped by /64, because one subscriber or host is
// normally given a whole /64 and could otherwise spread over 2^64
// addresses. An address that is not IP (a unix socket, a test's name)
// gives the zero Addr: not tracked per address.
func AddressKey(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}
