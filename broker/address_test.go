package broker

import "testing"

// AddressKey: the IP without port, IPv4-mapped as IPv4, IPv6 by /64.
func TestAddressKey(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"127.0.0.1:5000", "127.0.0.1"},
		{"127.0.0.1:5001", "127.0.0.1"},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::"},
		{"[2001:db8:1:3::1]:443", "2001:db8:1:3::"},
		{"[fe80::1%eth0]:80", "fe80::"},
		{"[::1]:9", "::"},
		{"@/run/stompbox.sock", "invalid IP"},
		{"", "invalid IP"},
	}
	for _, tt := range tests {
		if got := AddressKey(tt.remote).String(); got != tt.want {
			t.Errorf("AddressKey(%q) = %s, want %s", tt.remote, got, tt.want)
		}
	}
}
