//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The hostile-client suite: clients that break the protocol or the limits
// on purpose, against the real binary. Every case asserts the broker's exact
// answer (the ERROR's error-code, retryable where it matters, then the
// close) and that a bystander connected before the case still sends and
// receives afterwards. Helpers are in hostile_helpers_test.go.

const (
	// hostileConnectTimeout and hostileHeartbeat are short so the timeout
	// cases finish fast; the tolerance is the default 2, so a client that
	// promised 1s heart-beats is cut after 2s of silence.
	hostileConnectTimeout = 2 * time.Second
	hostileHeartbeat      = time.Second
	hostileMaxBody        = 64 << 10
	hostileFramesPerSec   = 500 // burst 1000
)

// hostileRSSBound bounds the broker's peak RSS (VmHWM) while 200 MiB are
// sent to a topic whose subscriber reads nothing: buffering that backlog
// would take more than 200 MiB, while the outbox limit (8 MiB, held once
// as messages and once encoded by the writer) and GC headroom need a few
// tens. Measured on 2 cores: 38 to 43 MiB (13 MiB at start); with -race,
// whose shadow memory roughly triples the heap, 110 to 131 MiB (35 MiB at
// start). The bounds leave room for slower machines and stay below 200 MiB.
var hostileRSSBound int64 = 96 << 20

func init() {
	if raceEnabled {
		hostileRSSBound = 192 << 20
	}
}

// hostileBytesIn counts the STOMP bytes the broker's read loops fed to the
// parser (the linger after a close reads without counting), so its growth
// over a case says how much of a hostile frame the broker took in.
const hostileBytesIn = `stompbox_bytes_received_total{transport="tcp"}`

// TestHostileFrames: malformed and oversized frames, lies about the body,
// a CONNECT trickled past the connect timeout, a frame flood. The flood
// runs under -full-policy error, which disconnects; the default throttles
// instead (pressure_flow_test.go).
func TestHostileFrames(t *testing.T) {
	b := startBroker(t, "-connect-timeout", hostileConnectTimeout.String(), "-heartbeat", hostileHeartbeat.String(),
		"-max-body", strconv.Itoa(hostileMaxBody), "-max-frames-per-second", strconv.Itoa(hostileFramesPerSec),
		"-connection-rate-per-ip", "-1", "-full-policy", "error")
	defer b.stop()
	admin := listenAttr(t, b, "admin")
	by := newHostileBystander(t, b.addr)
	defer by.close()
	run := func(name string, fn func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			fn(t)
			by.check(t)
		})
	}

	run("garbage/http-request", func(t *testing.T) {
		c, r := dialHostile(t, b.addr)
		writeHostile(t, c, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: hostile\r\n\r\n")
		// "GET / HTTP/1.1" is a command line, just not a STOMP one: the
		// broker's code for that is unknown-command (docs/compliance.md).
		expectHostileError(t, c, r, "unknown-command", "false")
	})
	run("garbage/random-bytes", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		junk := make([]byte, 4096)
		for i := range junk {
			if junk[i] = byte(rng.UintN(256)); junk[i] == '\n' {
				junk[i] = 0xff
			}
		}
		c, r := dialHostile(t, b.addr)
		writeHostile(t, c, string(junk))
		// No EOL: the command line passes its 64-byte limit.
		expectHostileError(t, c, r, "frame-too-large", "false")
	})
	run("send-before-connect", func(t *testing.T) {
		c, r := dialHostile(t, b.addr)
		writeHostile(t, c, "SEND\ndestination:/queue/hostile.early\nreceipt:early\n\nsneaky\x00")
		f := expectHostileError(t, c, r, "protocol-error", "false")
		if f.headers["receipt-id"] != "early" {
			t.Errorf("ERROR without receipt-id:early: %v", f)
		}
	})
	run("100k-headers", func(t *testing.T) {
		var sb strings.Builder
		sb.WriteString("SEND\ndestination:/queue/hostile.headers\n")
		for i := range 100_000 {
			fmt.Fprintf(&sb, "h%d:v\n", i)
		}
		sb.WriteString("\nx\x00")
		before := hostileMetric(t, admin, hostileBytesIn)
		c, r := connectHostile(t, b.addr, "0,0")
		done := writeHostileAsync(c, []byte(sb.String()))
		f := expectHostileError(t, c, r, "frame-too-large", "false")
		if !strings.Contains(f.body, "more than 128 headers") {
			t.Errorf("ERROR body %q does not name the header count limit", f.body)
		}
		fed := hostileMetric(t, admin, hostileBytesIn) - before
		t.Logf("sent %d bytes of headers, the broker parsed %.0f", sb.Len(), fed)
		if fed > 64<<10 {
			t.Errorf("the broker took in %.0f bytes of a frame it should refuse at its 129th header", fed)
		}
		awaitHostileWrite(t, done)
	})
	run("1MiB-header-line", func(t *testing.T) {
		frame := "SEND\ndestination:/queue/hostile.line\nx-long:" + strings.Repeat("a", 1<<20) + "\n\nx\x00"
		before := hostileMetric(t, admin, hostileBytesIn)
		c, r := connectHostile(t, b.addr, "0,0")
		done := writeHostileAsync(c, []byte(frame))
		expectHostileError(t, c, r, "frame-too-large", "false")
		if fed := hostileMetric(t, admin, hostileBytesIn) - before; fed > 64<<10 {
			t.Errorf("the broker took in %.0f bytes of a header line over its 8 KiB limit", fed)
		}
		awaitHostileWrite(t, done)
	})
	run("body/declared", func(t *testing.T) {
		c, r := connectHostile(t, b.addr, "0,0")
		// Only the headers: the broker refuses from content-length alone.
		writeHostile(t, c, "SEND\ndestination:/queue/hostile.body\ncontent-length:"+strconv.Itoa(hostileMaxBody+1)+"\n\n")
		expectHostileError(t, c, r, "frame-too-large", "false")
	})
	run("body/undeclared", func(t *testing.T) {
		before := hostileMetric(t, admin, hostileBytesIn)
		c, r := connectHostile(t, b.addr, "0,0")
		done := writeHostileAsync(c, []byte("SEND\ndestination:/queue/hostile.body\n\n"+strings.Repeat("b", 2*hostileMaxBody)))
		expectHostileError(t, c, r, "frame-too-large", "false")
		if fed := hostileMetric(t, admin, hostileBytesIn) - before; fed > hostileMaxBody+8<<10 {
			t.Errorf("the broker took in %.0f bytes of a body over its %d byte limit", fed, hostileMaxBody)
		}
		awaitHostileWrite(t, done)
	})
	run("content-length-lies", func(t *testing.T) {
		published := hostileMetric(t, admin, "stompbox_messages_published_total")
		// content-length larger than what follows, and a second frame in
		// what follows: the broker takes that frame as body bytes and waits
		// for the rest. What bounds the wait is the heart-beat the client
		// promised (1s here, times the tolerance 2): ERROR
		// heartbeat-timeout. A client that negotiated no heart-beats
		// (0,0) may stay mid-frame indefinitely, as it may stay idle: only
		// the connection caps bound how many such clients there are, and
		// max-body how much each one holds.
		lie := "SEND\ndestination:/queue/hostile.lie\ncontent-length:200\n\nshort\x00" +
			"SEND\ndestination:/queue/hostile.lie\nreceipt:swallowed\n\nswallowed\x00"
		// Before CONNECT the bound is the connect timeout, counted from
		// accept: a CONNECT whose body never comes is cut by it.
		early, earlyR := dialHostile(t, b.addr)
		earlyStart := time.Now()
		writeHostile(t, early, "CONNECT\naccept-version:1.2\nhost:localhost\ncontent-length:100\n\nshort")
		c, r := connectHostile(t, b.addr, "1000,0")
		quiet, quietR := connectHostile(t, b.addr, "0,0")
		writeHostile(t, quiet, lie)
		writeHostile(t, c, lie)
		start := time.Now()
		expectHostileError(t, c, r, "heartbeat-timeout", "true") // not RECEIPT swallowed
		expectHostileError(t, early, earlyR, "connect-timeout", "true")
		if elapsed := time.Since(earlyStart); elapsed > hostileConnectTimeout+2*time.Second {
			t.Errorf("a CONNECT short of its content-length cut after %v, want about %v", elapsed, hostileConnectTimeout)
		}
		timeout := 2 * hostileHeartbeat
		if elapsed := time.Since(start); elapsed < timeout-100*time.Millisecond || elapsed > timeout+2*time.Second {
			t.Errorf("heartbeat-timeout after %v, want about %v", elapsed, timeout)
		} else {
			t.Logf("mid-frame client cut after %v (heart-beat 1s x tolerance 2)", elapsed.Round(time.Millisecond))
		}
		if f, err := readHostileFrame(quiet, quietR, 200*time.Millisecond); err == nil {
			t.Errorf("the client without heart-beats got %v; want the broker still waiting for the body", f)
		}
		_ = quiet.Close()

		// The bytes after content-length are not a NUL.
		c, r = connectHostile(t, b.addr, "0,0")
		writeHostile(t, c, "SEND\ndestination:/queue/hostile.lie\ncontent-length:20\n\nshort\x00"+
			"SEND\ndestination:/queue/hostile.lie\n\nswallowed\x00")
		expectHostileError(t, c, r, "malformed-frame", "false")
		// content-length smaller than the body.
		c, r = connectHostile(t, b.addr, "0,0")
		writeHostile(t, c, "SEND\ndestination:/queue/hostile.lie\ncontent-length:3\n\nhello world\x00")
		expectHostileError(t, c, r, "malformed-frame", "false")
		if got := hostileMetric(t, admin, "stompbox_messages_published_total"); got != published {
			t.Errorf("messages published went from %v to %v: a lying frame was delivered", published, got)
		}
	})
	for name, header := range map[string]string{"tab": `x-bad:tab\there`, "trailing-backslash": `x-bad:trailing\`} {
		run("bad-escape/"+name, func(t *testing.T) {
			c, r := connectHostile(t, b.addr, "0,0")
			writeHostile(t, c, "SEND\ndestination:/queue/hostile.escape\n"+header+"\n\nx\x00")
			f := expectHostileError(t, c, r, "malformed-frame", "false")
			if !strings.Contains(f.body, "escape") {
				t.Errorf("ERROR body %q does not say escape", f.body)
			}
		})
	}
	run("trickled-connect", func(t *testing.T) {
		start := time.Now()
		c, r := dialHostile(t, b.addr)
		connect := "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00"
		stop, trickled := make(chan struct{}), make(chan int, 1)
		go func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			n := 0
			defer func() { trickled <- n }()
			for ; n < len(connect); n++ {
				_ = c.SetWriteDeadline(time.Now().Add(hostileWait))
				if _, err := c.Write([]byte{connect[n]}); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		f, err := readHostileFrame(c, r, hostileConnectTimeout+3*time.Second)
		elapsed := time.Since(start)
		close(stop)
		if err != nil || f.command != "ERROR" || f.headers["error-code"] != "connect-timeout" || f.headers["retryable"] != "true" {
			t.Fatalf("got %v, %v after %v; want ERROR connect-timeout retryable:true", f, err, elapsed)
		}
		expectHostileClose(t, c, r)
		t.Logf("cut after %v having trickled %d bytes of the CONNECT", elapsed.Round(time.Millisecond), <-trickled)
		if elapsed < hostileConnectTimeout || elapsed > hostileConnectTimeout+2*time.Second {
			t.Errorf("connect-timeout after %v, want between %v and %v", elapsed, hostileConnectTimeout, hostileConnectTimeout+2*time.Second)
		}
	})
	run("frame-flood", func(t *testing.T) {
		c, r := connectHostile(t, b.addr, "0,0")
		flood := strings.Repeat("SEND\ndestination:/topic/hostile.flood\n\nx\x00", 10*hostileFramesPerSec)
		done := writeHostileAsync(c, []byte(flood))
		f := expectHostileError(t, c, r, "limit-exceeded", "true")
		if !strings.Contains(f.body, "frames per second") {
			t.Errorf("ERROR body %q does not name the frame rate", f.body)
		}
		awaitHostileWrite(t, done)
	})
	requireHostileHealthy(t, admin)
}

// TestHostileSubscriptions: 10,000 SUBSCRIBEs on one connection, and a
// byte flood past -max-bytes-per-second (under -full-policy error, which
// disconnects; the default throttles instead: pressure_flow_test.go).
func TestHostileSubscriptions(t *testing.T) {
	b := startBroker(t, "-max-subscriptions", "1024", "-max-bytes-per-second", "1MiB", "-connection-rate-per-ip", "-1",
		"-full-policy", "error")
	defer b.stop()
	admin := listenAttr(t, b, "admin")
	by := newHostileBystander(t, b.addr)
	defer by.close()

	t.Run("10k-subscribes", func(t *testing.T) {
		var sb strings.Builder
		for i := range 10_000 { // one topic: the destination limit (1000) never applies
			fmt.Fprintf(&sb, "SUBSCRIBE\nid:s%d\ndestination:/topic/hostile.subs\nreceipt:r%d\n\n\x00", i, i)
		}
		c, r := connectHostile(t, b.addr, "0,0")
		done := writeHostileAsync(c, []byte(sb.String()))
		for i := range 1024 {
			f, err := readHostileFrame(c, r, hostileWait)
			if err != nil || f.command != "RECEIPT" || f.headers["receipt-id"] != "r"+strconv.Itoa(i) {
				t.Fatalf("SUBSCRIBE %d: got %v, %v; want RECEIPT r%d", i+1, f, err, i)
			}
		}
		f := expectHostileError(t, c, r, "limit-exceeded", "")
		if f.headers["receipt-id"] != "r1024" || !strings.Contains(f.body, "1024 subscriptions") {
			t.Errorf("want the 1025th SUBSCRIBE (receipt r1024) refused for the subscription limit, got %v", f)
		}
		t.Logf("1025th SUBSCRIBE: ERROR limit-exceeded retryable:%s", f.headers["retryable"])
		awaitHostileWrite(t, done)
		waitHostileMetric(t, admin, "stompbox_topic_subscribers", 0, hostileWait) // all 1024 released
		by.check(t)
	})
	t.Run("byte-flood", func(t *testing.T) {
		c, r := connectHostile(t, b.addr, "0,0")
		frame := "SEND\ndestination:/topic/hostile.bytes\n\n" + strings.Repeat("y", 256<<10) + "\x00"
		done := writeHostileAsync(c, []byte(strings.Repeat(frame, 24))) // 6 MiB; burst 2 MiB
		f := expectHostileError(t, c, r, "limit-exceeded", "true")
		if !strings.Contains(f.body, "bytes per second") {
			t.Errorf("ERROR body %q does not name the byte rate", f.body)
		}
		awaitHostileWrite(t, done)
		by.check(t)
	})
}

// TestHostileConnectionFlood: one address opens connections until refused,
// against each admission limit; the refused get ERROR limit-exceeded and
// no session (WebSocket: 503 for the caps, 429 for the rate).
func TestHostileConnectionFlood(t *testing.T) {
	caps := []struct{ name, flag, limit, why string }{
		{"per-ip", "-max-connections-per-ip", "per_ip", "per-address connection limit"},
		{"total", "-max-connections", "total", "server's connection limit"},
	}
	for _, tc := range caps {
		t.Run(tc.name, func(t *testing.T) {
			const limit = 50
			b := startBroker(t, tc.flag, strconv.Itoa(limit), "-connection-rate-per-ip", "-1")
			defer b.stop()
			admin := listenAttr(t, b, "admin")
			by := newHostileBystander(t, b.addr) // holds one of the slots
			defer by.close()
			admitted, refused := hostileFlood(t, b.addr, limit+5, 3)
			defer closeHostileConns(admitted)
			if len(admitted) != limit-1 || len(refused) != 3 {
				t.Fatalf("admitted %d, refused %d; want %d admitted beside the bystander, then refusals", len(admitted), len(refused), limit-1)
			}
			for _, f := range refused {
				if !strings.Contains(f.body, tc.why) {
					t.Errorf("refusal body %q does not name the %s", f.body, tc.why)
				}
			}
			if status, _ := hostileWSStatus(t, b.httpAddr); status != 503 {
				t.Errorf("WebSocket upgrade at the limit: HTTP %d, want 503", status)
			}
			waitHostileMetric(t, admin, `stompbox_connections_refused_total{limit="`+tc.limit+`"}`, 4, hostileWait)
			waitHostileMetric(t, admin, "stompbox_sessions", limit, hostileWait) // no session for a refusal
			by.check(t)
			// A slot given back is usable again.
			_ = admitted[0].Close()
			deadline := time.Now().Add(hostileWait)
			for {
				more, _ := hostileFlood(t, b.addr, 1, 1)
				if len(more) == 1 {
					admitted[0] = more[0]
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no slot freed within %v of closing a connection", hostileWait)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	t.Run("rate", func(t *testing.T) {
		const rate = 20 // burst 40
		b := startBroker(t, "-connection-rate-per-ip", strconv.Itoa(rate), "-max-connections-per-ip", "1000")
		defer b.stop()
		admin := listenAttr(t, b, "admin")
		by := newHostileBystander(t, b.addr) // spends one token
		defer by.close()
		start := time.Now()
		admitted, refused := hostileFlood(t, b.addr, 100, 3)
		defer closeHostileConns(admitted)
		elapsed := time.Since(start)
		allowed := 2*rate - 1 + int(elapsed.Seconds()*rate) + 1
		t.Logf("admitted %d in %v, then refused", len(admitted), elapsed.Round(time.Millisecond))
		if len(refused) != 3 || len(admitted) < 2*rate-1 || len(admitted) > allowed {
			t.Fatalf("admitted %d, refused %d in %v; want %d..%d admitted, then refusals", len(admitted), len(refused), elapsed, 2*rate-1, allowed)
		}
		for _, f := range refused {
			if !strings.Contains(f.body, "rate limit") {
				t.Errorf("refusal body %q does not name the rate limit", f.body)
			}
		}
		// Tokens keep coming (one per 50ms): an upgrade may get through,
		// but the one after it must not.
		for i := 0; ; i++ {
			status, retryAfter := hostileWSStatus(t, b.httpAddr)
			if status == 101 && i < 5 {
				continue
			}
			if n, err := strconv.Atoi(retryAfter); status != 429 || err != nil || n < 1 {
				t.Errorf("WebSocket upgrade past the rate: HTTP %d Retry-After %q, want 429 and a delay", status, retryAfter)
			}
			break
		}
		waitHostileMetric(t, admin, "stompbox_sessions", float64(len(admitted)+1), hostileWait) // no session for a refusal
		if got := hostileMetric(t, admin, `stompbox_connections_refused_total{limit="rate"}`); got < 4 {
			t.Errorf("refused{limit=rate} = %v, want at least 4", got)
		}
		by.check(t)
	})
}

// TestHostileResets: 50 clients reset their connection (RST) mid-frame,
// half of them in the middle of the CONNECT; the broker stays healthy and
// every session they had is gone.
func TestHostileResets(t *testing.T) {
	b := startBroker(t, "-connection-rate-per-ip", "-1")
	defer b.stop()
	admin := listenAttr(t, b, "admin")
	by := newHostileBystander(t, b.addr)
	defer by.close()
	for i := range 50 {
		c, err := net.DialTimeout("tcp", b.addr, hostileWait)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() }) // if a check below fails first
		half := "CONNECT\naccept-version:1.2\nhost:loc"
		if i%2 == 0 {
			r := bufio.NewReader(c)
			writeHostile(t, c, "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00")
			if f, err := readHostileFrame(c, r, hostileWait); err != nil || f.command != "CONNECTED" {
				t.Fatalf("reset client %d: CONNECT got %v, %v", i, f, err)
			}
			half = "SEND\ndestination:/queue/hostile.reset\ncontent-length:1000\n\n" + strings.Repeat("z", 500)
		}
		writeHostile(t, c, half)
		_ = c.(*net.TCPConn).SetLinger(0) // Close sends RST
		_ = c.Close()
	}
	requireHostileHealthy(t, admin)
	by.check(t)
	waitHostileMetric(t, admin, "stompbox_sessions", 1, hostileWait)
	waitHostileMetric(t, admin, `stompbox_connections{transport="tcp"}`, 1, hostileWait)
	if got := hostileMetric(t, admin, "stompbox_messages_published_total"); got != float64(by.sent) {
		t.Errorf("messages published = %v, want %d (the bystander's): a half SEND was delivered", got, by.sent)
	}
}

// TestHostileSlowConsumer: a subscriber that never reads (tiny receive
// buffer, no Read call at all) while 200 MiB are published to its topic is
// cut as a slow consumer, and the broker's memory stays bounded.
func TestHostileSlowConsumer(t *testing.T) {
	const (
		topic    = "/topic/hostile.stalled"
		messages = 3200
		size     = 64 << 10 // 3200 x 64 KiB = 200 MiB
		every    = 32       // a receipt per 2 MiB
	)
	b := startBroker(t, "-max-bytes-per-second", "0", "-max-outbox-bytes", "8MiB", "-log-level", "debug")
	defer b.stop()
	admin := listenAttr(t, b, "admin")
	pid := b.cmd.Process.Pid
	by := newHostileBystander(t, b.addr)
	defer by.close()
	_, base, err := hostileProcMemory(pid)
	if err != nil {
		t.Fatal(err)
	}

	d := net.Dialer{Timeout: hostileWait, Control: hostileTinyRcvBuf}
	stalled, err := d.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	writeHostile(t, stalled, "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00"+
		"SUBSCRIBE\nid:0\ndestination:"+topic+"\n\n\x00")
	waitHostileMetric(t, admin, "stompbox_topic_subscribers", 1, hostileWait) // subscribed, without reading a byte

	sampler := sampleHostileRSS(pid, 20*time.Millisecond)
	pub, pubR := connectHostile(t, b.addr, "0,0")
	head := "SEND\ndestination:" + topic + "\ncontent-length:" + strconv.Itoa(size) + "\n"
	body := "\n" + strings.Repeat("m", size) + "\x00"
	plain := []byte(head + body)
	start := time.Now()
	for i := range messages {
		if i%every != every-1 {
			_ = pub.SetWriteDeadline(time.Now().Add(hostileWait))
			if _, err := pub.Write(plain); err != nil {
				t.Fatalf("publisher, message %d: %v", i, err)
			}
			continue
		}
		writeHostile(t, pub, head+"receipt:r"+strconv.Itoa(i)+"\n"+body)
		if f, err := readHostileFrame(pub, pubR, hostileWait); err != nil || f.headers["receipt-id"] != "r"+strconv.Itoa(i) {
			t.Fatalf("publisher, message %d: got %v, %v; want its RECEIPT", i, f, err)
		}
	}
	elapsed := time.Since(start)
	peak, samples := sampler.finish()
	_, hwm, err := hostileProcMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("published %d x %d KiB in %v; broker VmHWM %s before, %s after (sampled VmRSS peak %s over %d samples); bound %s",
		messages, size>>10, elapsed.Round(time.Millisecond), hostileMiB(base), hostileMiB(hwm), hostileMiB(peak), samples, hostileMiB(hostileRSSBound))
	if hwm >= hostileRSSBound {
		t.Errorf("broker peak RSS %s, want below %s", hostileMiB(hwm), hostileMiB(hostileRSSBound))
	}
	waitHostileMetric(t, admin, "stompbox_slow_consumers_total", 1, hostileWait)
	waitHostileMetric(t, admin, `stompbox_disconnects_total{reason="slow-consumer"}`, 1, hostileWait)
	waitHostileMetric(t, admin, "stompbox_sessions", 2, hostileWait) // the bystander and the publisher

	// What the stalled reader finds when it finally reads: the start of
	// its backlog, then the close.
	_ = stalled.SetReadDeadline(time.Now().Add(hostileWait))
	var got strings.Builder
	_, err = bufio.NewReader(stalled).WriteTo(&got)
	t.Logf("the stalled reader then read %s before %v; ending on a frame boundary: %v; ERROR slow-consumer among it: %v",
		hostileMiB(int64(got.Len())), err, strings.HasSuffix(got.String(), "\x00"), strings.Contains(got.String(), "error-code:slow-consumer"))
	requireHostileHealthy(t, admin)
	by.check(t)
}
