package frames

import (
	"errors"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestParseHeartBeat(t *testing.T) {
	cases := []struct {
		in   string
		want HeartBeat
		err  bool
	}{
		{"0,0", HeartBeat{}, false},
		{"10000,20000", HeartBeat{Send: 10 * time.Second, Receive: 20 * time.Second}, false},
		{" 100 , 5 ", HeartBeat{Send: 100 * ms, Receive: 5 * ms}, false},
		{"007,1", HeartBeat{Send: 7 * ms, Receive: 1 * ms}, false},
		{"2147483647,0", HeartBeat{Send: 2147483647 * ms}, false},
		{"2147483648,0", HeartBeat{}, true},
		{"99999999999999999999999,0", HeartBeat{}, true},
		{"", HeartBeat{}, true},
		{"100", HeartBeat{}, true},
		{",100", HeartBeat{}, true},
		{"100,", HeartBeat{}, true},
		{"-1,0", HeartBeat{}, true},
		{"1.5,0", HeartBeat{}, true},
		{"a,b", HeartBeat{}, true},
		{"1,2,3", HeartBeat{}, true},
	}
	for _, tc := range cases {
		got, err := ParseHeartBeat([]byte(tc.in))
		if tc.err {
			if !errors.Is(err, ErrBadHeartBeat) {
				t.Errorf("ParseHeartBeat(%q) error = %v, want ErrBadHeartBeat", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseHeartBeat(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestAppendHeartBeat(t *testing.T) {
	cases := []struct {
		in   HeartBeat
		want string
	}{
		{HeartBeat{}, "0,0"},
		{HeartBeat{Send: 10 * time.Second, Receive: 250 * ms}, "10000,250"},
		{HeartBeat{Send: time.Microsecond, Receive: 1500 * time.Microsecond}, "1,2"}, // rounded up, never to 0
		{HeartBeat{Send: -time.Second}, "0,0"},
	}
	for _, tc := range cases {
		if got := string(AppendHeartBeat(nil, tc.in)); got != tc.want {
			t.Errorf("AppendHeartBeat(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// STOMP 1.2, Heart-beating: "if <cx> is 0 (the client cannot send heart-beats)
// or <sy> is 0 (the server does not want to receive heart-beats) then there
// will be none; otherwise, there will be heart-beats every MAX(<cx>,<sy>)
// milliseconds", and the same for the other direction with <sx> and <cy>.
func TestNegotiateHeartBeat(t *testing.T) {
	cases := []struct {
		name               string
		server, client     HeartBeat
		wantSend, wantWait time.Duration
	}{
		{"both off", HeartBeat{}, HeartBeat{}, 0, 0},
		{"client offers nothing", HeartBeat{Send: 10 * ms, Receive: 10 * ms}, HeartBeat{}, 0, 0},
		{"server offers nothing", HeartBeat{}, HeartBeat{Send: 10 * ms, Receive: 10 * ms}, 0, 0},
		{"max of each pair", HeartBeat{Send: 5000 * ms, Receive: 10000 * ms}, HeartBeat{Send: 4000 * ms, Receive: 20000 * ms},
			20000 * ms, 10000 * ms},
		{"client sends only", HeartBeat{Send: 1000 * ms, Receive: 1000 * ms}, HeartBeat{Send: 3000 * ms}, 0, 3000 * ms},
		{"client receives only", HeartBeat{Send: 1000 * ms, Receive: 1000 * ms}, HeartBeat{Receive: 500 * ms}, 1000 * ms, 0},
		{"server does not want any", HeartBeat{Send: 1000 * ms}, HeartBeat{Send: 10 * ms, Receive: 10 * ms}, 1000 * ms, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			send, expect := NegotiateHeartBeat(tc.server, tc.client)
			if send != tc.wantSend || expect != tc.wantWait {
				t.Fatalf("server view: send %v expect %v, want %v %v", send, expect, tc.wantSend, tc.wantWait)
			}
			// The client's view is the mirror image.
			cSend, cExpect := NegotiateHeartBeat(tc.client, tc.server)
			if cSend != tc.wantWait || cExpect != tc.wantSend {
				t.Fatalf("client view: send %v expect %v, want %v %v", cSend, cExpect, tc.wantWait, tc.wantSend)
			}
		})
	}
}

func TestNegotiateVersion(t *testing.T) {
	cases := []struct {
		in      string
		present bool
		want    Version
		ok      bool
	}{
		{"", false, V10, true}, // header absent: 1.0 only
		{"1.0", true, V10, true},
		{"1.1", true, V11, true},
		{"1.2", true, V12, true},
		{"1.0,1.1,2.0", true, V11, true}, // the spec's example
		{"1.2,1.0", true, V12, true},
		{" 1.1 , 1.0 ", true, V11, true},
		{"2.0,2.1", true, 0, false},
		{"", true, 0, false},
		{"1.", true, 0, false},
	}
	for _, tc := range cases {
		v, ok := NegotiateVersion([]byte(tc.in), tc.present)
		if v != tc.want || ok != tc.ok {
			t.Errorf("NegotiateVersion(%q, %v) = %v, %v; want %v, %v", tc.in, tc.present, v, ok, tc.want, tc.ok)
		}
	}
}

func TestCommandNames(t *testing.T) {
	for c := CmdConnect; c < commandCount; c++ {
		if got := ParseCommand([]byte(c.String())); got != c {
			t.Errorf("ParseCommand(%q) = %v, want %v", c.String(), got, c)
		}
	}
	if Command(200).String() != "UNKNOWN" || ParseCommand([]byte("UNKNOWN")) != CmdUnknown {
		t.Error("out-of-range commands must read as UNKNOWN and UNKNOWN must not parse")
	}
	client := map[Command]bool{CmdConnect: true, CmdStomp: true, CmdSend: true, CmdSubscribe: true, CmdUnsubscribe: true,
		CmdAck: true, CmdNack: true, CmdBegin: true, CmdCommit: true, CmdAbort: true, CmdDisconnect: true}
	body := map[Command]bool{CmdSend: true, CmdMessage: true, CmdError: true}
	for c := CmdUnknown; c < commandCount; c++ {
		if c.FromClient() != client[c] || c.HasBody() != body[c] {
			t.Errorf("%v: FromClient %v HasBody %v", c, c.FromClient(), c.HasBody())
		}
	}
	if V12.String() != "1.2" || V11.String() != "1.1" || V10.String() != "1.0" || Version(0).String() != "unknown" {
		t.Error("Version.String")
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	got := Limits{MaxBody: 10, MaxHeaders: -1}.WithDefaults()
	want := Limits{MaxCommandLine: DefaultMaxCommandLine, MaxHeaderLine: DefaultMaxHeaderLine,
		MaxHeaders: DefaultMaxHeaders, MaxHeaderBytes: DefaultMaxHeaderBytes, MaxBody: 10}
	if got != want {
		t.Fatalf("WithDefaults = %+v, want %+v", got, want)
	}
}
