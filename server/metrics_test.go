package server

import (
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/persistence"
)

// sample returns the value of the sample named exactly series (name plus
// its labels in Prometheus' sorted order, e.g. `m{a="x",b="y"}`), or "" if
// /metrics has no such sample.
func sample(body, series string) string {
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// scrapeUntil scrapes /metrics until series has value want (the server
// releases a closed session just after the client sees the close), and
// returns the last body.
func scrapeUntil(t *testing.T, admin, series, want string) string {
	t.Helper()
	var body string
	for range 400 {
		var code int
		code, body = get(t, admin+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		if sample(body, series) == want {
			return body
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s is %q after 4s, want %s", series, sample(body, series), want)
	return ""
}

func checkSamples(t *testing.T, body string, want map[string]string) {
	t.Helper()
	for series, value := range want {
		if got := sample(body, series); got != value {
			t.Errorf("%s = %q, want %s", series, got, value)
		}
	}
}

// TestMetricsScenario runs one of everything an operator watches (connect
// over TCP and WebSocket, publish, ack, NACK to the DLQ, a persistent send
// through the journal, a heart-beat timeout, a DISCONNECT over WebSocket),
// then scrapes /metrics over HTTP and checks the exact values.
func TestMetricsScenario(t *testing.T) {
	reg := prometheus.NewRegistry()
	journal, err := persistence.Open(t.TempDir(), persistence.Config{Registerer: reg, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = journal.Close() })
	srv, wsURL := startWebServer(t, Config{Registry: reg, Version: "test-1", Broker: broker.Config{
		MaxRedeliveries:    1,
		HeartBeat:          frames.HeartBeat{Send: -1, Receive: 100 * time.Millisecond},
		DestinationMetrics: 2,
		Journal:            journal,
	}})
	admin := startAdmin(t, srv.Server)
	var tcpSent int // STOMP bytes the TCP clients wrote
	send := func(c *rawClient, s string) { c.send(s); tcpSent += len(s) }

	// A consumer: one message acked, one NACKed twice (to the DLQ).
	c := dialRaw(t, srv.addr)
	connect := frame("CONNECT", "", "accept-version:1.2", "host:test")
	send(c, connect)
	if f := c.next(5 * time.Second); f.Command != frames.CmdConnected {
		t.Fatalf("got %s, want CONNECTED", f.Command)
	}
	send(c, frame("SUBSCRIBE", "", "id:s", "destination:/queue/jobs", "ack:client-individual"))
	send(c, frame("SEND", "one", "destination:/queue/jobs"))
	send(c, frame("SEND", "two", "destination:/queue/jobs", "persistent:true", "receipt:r"))
	var acks []string
	for len(acks) < 2 {
		if f := c.next(5 * time.Second); f.Command == frames.CmdMessage {
			acks = append(acks, header(f, "ack"))
		}
	}
	send(c, frame("ACK", "", "id:"+acks[0]))
	send(c, frame("NACK", "", "id:"+acks[1]))
	var again string
	for again == "" {
		if f := c.next(5 * time.Second); f.Command == frames.CmdMessage {
			again = header(f, "ack")
		}
	}
	send(c, frame("NACK", "", "id:"+again, "receipt:done"))
	c.expectReceipt("done")

	// A client that promises heart-beats and goes silent.
	silent := dialRaw(t, srv.addr)
	silentConnect := frame("CONNECT", "", "accept-version:1.2", "host:test", "heart-beat:50,0")
	send(silent, silentConnect)
	if f := silent.next(5 * time.Second); f.Command != frames.CmdConnected {
		t.Fatalf("got %s, want CONNECTED", f.Command)
	}
	checkERROR(t, silent.next(5*time.Second), errorWant{message: "heart-beat timeout", code: "heartbeat-timeout", retryable: true})
	silent.expectClosed(5 * time.Second)

	// A browser-like client that says goodbye.
	wsc, _ := dialWS(t, wsURL, "v12.stomp")
	for _, f := range []string{connect, frame("DISCONNECT", "", "receipt:bye")} {
		if err := wsutil.WriteClientText(wsc, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	readWS(t, wsc) // CONNECTED
	readWS(t, wsc) // RECEIPT
	_ = wsc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := wsutil.ReadServerData(wsc); !isClose(err, ws.StatusNormalClosure) {
		t.Fatalf("after DISCONNECT: %v, want close 1000", err)
	}

	// Sessions end at once; their sockets after the linger.
	scrapeUntil(t, admin, "stompbox_sessions", "1")
	scrapeUntil(t, admin, `stompbox_connections{transport="ws"}`, "0")
	body := scrapeUntil(t, admin, `stompbox_connections{transport="tcp"}`, "1")
	checkSamples(t, body, map[string]string{
		`stompbox_build_info{goversion="` + runtime.Version() + `",version="test-1"}`: "1",
		`stompbox_connections{transport="tcp"}`:                                       "1",
		`stompbox_connections{transport="ws"}`:                                        "0",
		`stompbox_connections_accepted_total{transport="tcp"}`:                        "2",
		`stompbox_connections_accepted_total{transport="ws"}`:                         "1",
		`stompbox_connections_accepted_total{transport="wss"}`:                        "0",
		`stompbox_bytes_received_total{transport="tcp"}`:                              strconv.Itoa(tcpSent),
		`stompbox_bytes_received_total{transport="ws"}`:                               strconv.Itoa(len(connect) + len(frame("DISCONNECT", "", "receipt:bye"))),
		"stompbox_connects_total":                                                     "3",
		`stompbox_disconnects_total{reason="heartbeat-timeout"}`:                      "1",
		`stompbox_disconnects_total{reason="disconnect"}`:                             "1",
		`stompbox_disconnects_total{reason="peer"}`:                                   "0",
		`stompbox_frames_received_total{command="CONNECT"}`:                           "3",
		`stompbox_frames_received_total{command="SEND"}`:                              "2",
		`stompbox_frames_received_total{command="SUBSCRIBE"}`:                         "1",
		`stompbox_frames_received_total{command="ACK"}`:                               "1",
		`stompbox_frames_received_total{command="NACK"}`:                              "2",
		`stompbox_frames_received_total{command="DISCONNECT"}`:                        "1",
		`stompbox_frames_sent_total{command="CONNECTED"}`:                             "3",
		`stompbox_frames_sent_total{command="MESSAGE"}`:                               "3",
		`stompbox_frames_sent_total{command="RECEIPT"}`:                               "3",
		`stompbox_frames_sent_total{command="ERROR"}`:                                 "1",
		"stompbox_messages_published_total":                                           "2",
		"stompbox_messages_delivered_total":                                           "3",
		"stompbox_messages_acked_total":                                               "1",
		"stompbox_messages_nacked_total":                                              "2",
		"stompbox_messages_redelivered_total":                                         "1",
		"stompbox_messages_dead_lettered_total":                                       "1",
		"stompbox_messages_expired_total":                                             "0",
		`stompbox_errors_total{code="heartbeat-timeout"}`:                             "1",
		`stompbox_errors_total{code="slow-consumer"}`:                                 "0",
		"stompbox_heartbeat_timeouts_total":                                           "1",
		"stompbox_slow_consumers_total":                                               "0",
		`stompbox_websocket_closes_total{code="1000",initiator="server"}`:             "1",
		`stompbox_websocket_closes_total{code="1001",initiator="server"}`:             "0",
		`stompbox_queue_messages{kind="queue"}`:                                       "0",
		`stompbox_queue_messages{kind="dlq"}`:                                         "1",
		`stompbox_queue_consumers{kind="queue"}`:                                      "1",
		"stompbox_queues":                                                             "2",
		`stompbox_destination_messages{destination="/queue/DLQ.jobs"}`:                "1",
		`stompbox_destination_consumers{destination="/queue/jobs"}`:                   "1",
		// Two waited journal appends: the persistent SEND, then its move
		// to the DLQ (the removal from /queue/jobs and the enqueue,
		// atomically); and one written without waiting: its delivery
		// count when the first NACK put it back.
		"stompbox_journal_append_duration_seconds_count": "2",
		"stompbox_journal_appends_total":                 "3",
		"stompbox_journal_max_bytes":                     "6.7108864e+07",
	})
	if n := sample(body, "stompbox_journal_fsync_duration_seconds_count"); n == "" || n == "0" {
		t.Errorf("fsync histogram count %q, want at least one fsync", n)
	}
	if sample(body, "stompbox_journal_bytes") == "0" {
		t.Error("stompbox_journal_bytes is 0 after two appends")
	}
	if strings.Count(body, "stompbox_destination_messages{") != 2 {
		t.Errorf("want exactly DestinationMetrics=2 destination series:\n%s", grepLines(body, "stompbox_destination_messages"))
	}
}

// TestMetricsSlowConsumer: a subscriber that never reads is cut off; the
// metrics say so once, under every name an alert may use.
func TestMetricsSlowConsumer(t *testing.T) {
	srv := startServer(t, Config{Linger: 200 * time.Millisecond, Broker: broker.Config{MaxOutboxBytes: 256 << 10}})
	admin := startAdmin(t, srv.Server)
	dialStalled(t, srv.addr, "/topic/stalled")
	pub := dialRaw(t, srv.addr)
	pub.connect()
	body := strings.Repeat("s", 16<<10)
	stats := srv.Broker().Stats()
	for sent := 0; sent < 2000 && stats.SlowConsumers.Load() == 0; sent++ {
		pub.send(frame("SEND", body, "destination:/topic/stalled", "receipt:r"))
		pub.expectReceipt("r")
	}
	scrapeUntil(t, admin, "stompbox_sessions", "1")
	metrics := scrapeUntil(t, admin, `stompbox_connections{transport="tcp"}`, "1")
	checkSamples(t, metrics, map[string]string{
		"stompbox_slow_consumers_total":                      "1",
		`stompbox_errors_total{code="slow-consumer"}`:        "1",
		`stompbox_disconnects_total{reason="slow-consumer"}`: "1",
		`stompbox_connections{transport="tcp"}`:              "1",
		"stompbox_topic_subscribers":                         "0",
	})
}

func isClose(err error, code ws.StatusCode) bool {
	var closed wsutil.ClosedError
	return errors.As(err, &closed) && closed.Code == code
}

func grepLines(body, prefix string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
