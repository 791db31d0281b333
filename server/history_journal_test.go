package server

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/persistence"
)

// Topic history with the journal on: restarts and persistent SENDs.

// TestHistoryResumeAcrossRestart: with the journal on, a topic's history
// and its epoch survive a restart (a clean shutdown): resume-after an
// offset from before is recovered:true with exactly the messages after
// it. Without a journal the restart starts a new epoch: recovered:false.
func TestHistoryResumeAcrossRestart(t *testing.T) {
	for _, journaled := range []bool{true, false} {
		t.Run("journal="+strconv.FormatBool(journaled), func(t *testing.T) {
			dir := t.TempDir()
			start := func() (*testServer, func()) {
				cfg := historyConfig(100, 0)
				// A small ring too: its evictions are journaled as trims.
				cfg.Broker.TopicHistory = append([]broker.HistoryRule{{Pattern: "/topic/small", Size: 4}}, cfg.Broker.TopicHistory...)
				var j *persistence.File
				if journaled {
					var err error
					j, err = persistence.Open(dir, persistence.Config{Sync: persistence.SyncAlways, Logger: slog.New(slog.DiscardHandler)})
					if err != nil {
						t.Fatal(err)
					}
					cfg.Broker.Journal = j
				}
				srv := New(cfg)
				if err := srv.Broker().Recover(); err != nil {
					t.Fatal(err)
				}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				served := make(chan error, 1)
				go func() { served <- srv.Serve(ln) }()
				var once sync.Once
				stop := func() {
					once.Do(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						if err := srv.Shutdown(ctx); err != nil {
							t.Errorf("shutdown: %v", err)
						}
						<-served
						if j != nil {
							if err := j.Close(); err != nil {
								t.Errorf("journal close: %v", err)
							}
						}
					})
				}
				t.Cleanup(stop)
				return &testServer{Server: srv, addr: ln.Addr().String()}, stop
			}
			srv, stop := start()
			c := dialRaw(t, srv.addr)
			c.connect()
			epoch := epochOf(t, header(subscribeReceipt(c, "s", "/topic/hist.r"), "offset"))
			pub := dialRaw(t, srv.addr)
			pub.connect()
			publishN(pub, "/topic/hist.r", "m", 10)
			expectMessages(c, epoch, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"}, 1, false)
			smallEpoch := epochOf(t, header(subscribeReceipt(c, "small", "/topic/small"), "offset"))
			publishN(pub, "/topic/small", "s", 10)
			expectMessages(c, smallEpoch, []string{"s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"}, 1, false)
			stop()

			srv, _ = start()
			c = dialRaw(t, srv.addr)
			c.connect()
			r := subscribeReceipt(c, "again", "/topic/hist.r", "resume-after:"+epoch+"-7")
			if !journaled {
				if header(r, "recovered") != "false" || strings.HasPrefix(header(r, "offset"), epoch+"-") {
					t.Fatalf("without a journal: recovered %q offset %q, want false and a new epoch", header(r, "recovered"), header(r, "offset"))
				}
				return
			}
			if header(r, "recovered") != "true" || header(r, "offset") != epoch+"-10" {
				t.Fatalf("after restart: recovered %q offset %q, want true and %s-10", header(r, "recovered"), header(r, "offset"), epoch)
			}
			expectMessages(c, epoch, []string{"m7", "m8", "m9"}, 8, true)
			// The small ring comes back as it was: its last 4, evicted ones
			// not recovered.
			r = subscribeReceipt(c, "small-again", "/topic/small", "resume-after:"+smallEpoch+"-2")
			if header(r, "recovered") != "false" || header(r, "offset") != smallEpoch+"-10" {
				t.Fatalf("small ring after restart: recovered %q offset %q, want false and %s-10", header(r, "recovered"), header(r, "offset"), smallEpoch)
			}
			expectMessages(c, smallEpoch, []string{"s6", "s7", "s8", "s9"}, 7, true)
			pub = dialRaw(t, srv.addr)
			pub.connect()
			publishN(pub, "/topic/hist.r", "n", 1)
			expectMessages(c, epoch, []string{"n0"}, 11, false)
		})
	}
}

// TestHistoryPersistentSends: persistent:true SENDs to a history topic
// with the journal on (pipelined, with a durable subscription on the
// topic) get their RECEIPTs, in order, and their offsets in order at a
// live subscriber; the durable subscription gets every message too.
func TestHistoryPersistentSends(t *testing.T) {
	j, err := persistence.Open(t.TempDir(), persistence.Config{Sync: persistence.SyncAlways, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = j.Close() })
	cfg := historyConfig(100, 0)
	cfg.Broker.Journal = j
	srv := startServer(t, cfg)
	live := dialRaw(t, srv.addr)
	live.connect()
	epoch := epochOf(t, header(subscribeReceipt(live, "live", "/topic/hist.p"), "offset"))
	durable := dialRaw(t, srv.addr)
	durable.connect("client-id:d")
	subscribeReceipt(durable, "d", "/topic/hist.p", "durable-subscription-name:keep")
	pub := dialRaw(t, srv.addr)
	pub.connect()
	var w strings.Builder
	for i := range 20 {
		w.WriteString(frame("SEND", "p"+strconv.Itoa(i), "destination:/topic/hist.p", "persistent:true", "receipt:r"+strconv.Itoa(i)))
	}
	pub.send(w.String())
	for i := range 20 {
		if f := pub.next(gsWait); f.Command != frames.CmdReceipt || header(f, "receipt-id") != "r"+strconv.Itoa(i) {
			t.Fatalf("frame %d: %s receipt-id %q (%s)", i, f.Command, header(f, "receipt-id"), f.Body)
		}
	}
	bodies := make([]string, 20)
	for i := range bodies {
		bodies[i] = "p" + strconv.Itoa(i)
	}
	expectMessages(live, epoch, bodies, 1, false)
	for i := range 20 {
		if f := durable.next(gsWait); f.Command != frames.CmdMessage || string(f.Body) != bodies[i] {
			t.Fatalf("durable message %d: %s %q", i, f.Command, f.Body)
		}
	}
	c := dialRaw(t, srv.addr)
	c.connect()
	r := subscribeReceipt(c, "resume", "/topic/hist.p", "resume-after:"+epoch+"-18")
	if header(r, "recovered") != "true" || header(r, "offset") != epoch+"-20" {
		t.Fatalf("recovered %q offset %q", header(r, "recovered"), header(r, "offset"))
	}
	expectMessages(c, epoch, bodies[18:], 19, true)
}
