package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// maxErrors bounds the errors a Result lists; the first is the cause, the
// rest usually its echoes on other connections.
const maxErrors = 10

// Run runs cfg's scenario (cfg must have passed Validate). The Result is
// always filled with what was measured; a non-nil error (also listed in
// Result.Errors, with Result.OK false) means the run failed: a message
// lost, duplicated or reordered, an ERROR from the broker, a connection
// dropped, or the timeout.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("-timeout %v reached", cfg.Timeout))
	defer cancel()
	ctx, fail := context.WithCancelCause(ctx)
	r := &runner{cfg: &cfg, base: time.Now(), ctx: ctx, cancel: fail}
	r.res = &Result{Scenario: cfg.Scenario, Transport: cfg.transport, Parameters: cfg, Errors: []string{}}
	// Whatever ends the run early (a failure, the timeout) closes every
	// connection, which unblocks every read and write.
	stopAbort := context.AfterFunc(ctx, r.abortAll)
	stopWatch := r.watch()
	var err error
	switch cfg.Scenario {
	case ScenarioQueue, ScenarioPersistent:
		err = r.runQueue()
	case ScenarioTopic:
		err = r.runTopic()
	case ScenarioLatency:
		err = r.runLatency()
	case ScenarioIdle:
		err = r.runIdle()
	default:
		err = fmt.Errorf("unknown scenario %q", cfg.Scenario)
	}
	if werr := stopWatch(); err == nil {
		err = werr
	}
	if err != nil {
		r.mu.Lock()
		first := len(r.errs) == 0
		r.mu.Unlock()
		if first { // else it is an echo of the recorded failure
			r.fail(err)
		}
	}
	if stopAbort() && err == nil {
		// The run went well so far: close politely, within the timeout.
		r.disconnectAll()
	}
	fail(nil)
	r.hb.Wait()
	// Every connection is closed by now, or about to be (abortAll runs on
	// its own goroutine): wait for their readers, without holding mu,
	// which a reader's end takes to record its error.
	r.mu.Lock()
	conns := r.conns
	r.mu.Unlock()
	for _, c := range conns {
		<-c.done
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		r.res.Errors = append(r.res.Errors, e.Error())
	}
	r.res.OK = len(r.errs) == 0
	if !r.res.OK {
		return r.res, r.errs[0]
	}
	return r.res, nil
}

// watch starts what runs beside every scenario: the -scrape scraper, and
// the broker CPU reading of the scenarios other than idle (which reads its
// own). The function it returns stops them and records what they measured.
func (r *runner) watch() (stop func() error) {
	cfg := r.cfg
	var cpu0 int64
	start := time.Now()
	if cfg.BrokerPID > 0 && cfg.Scenario != ScenarioIdle {
		var err error
		if cpu0, err = readCPUTicks(cfg.BrokerPID); err != nil {
			return func() error { return err }
		}
	}
	var sc *scraper
	var scraping sync.WaitGroup
	ctx, cancel := context.WithCancel(r.ctx)
	if len(cfg.scrapeURLs) > 0 {
		sc = newScraper(cfg)
		scraping.Go(func() { sc.run(ctx, r.fail) })
	}
	return func() error {
		cancel()
		scraping.Wait()
		if sc != nil {
			r.res.Scrape = sc.result()
		}
		if cfg.BrokerPID > 0 && cfg.Scenario != ScenarioIdle {
			cpu1, err := readCPUTicks(cfg.BrokerPID)
			if err != nil {
				return err
			}
			pct := float64(cpu1-cpu0) / clockTicks / time.Since(start).Seconds() * 100
			r.res.CPUPct = &pct
		}
		return nil
	}
}

// runner is the state of one run shared by its scenario's goroutines.
type runner struct {
	cfg    *Config                 // immutable
	base   time.Time               // immutable: the zero of every stamp's send time
	ctx    context.Context         // ends at the timeout or the first failure
	cancel context.CancelCauseFunc // fails the run
	res    *Result                 // written by the scenario's goroutine; errors under mu
	hb     sync.WaitGroup          // the heart-beat sender

	mu    sync.Mutex
	errs  []error // guarded by mu
	conns []*conn // guarded by mu: every connection opened, for closing
}

// now is the time since the run's base, in ns (monotonic).
func (r *runner) now() int64 { return int64(time.Since(r.base)) }

// fail records err and ends the run.
func (r *runner) fail(err error) {
	r.mu.Lock()
	if len(r.errs) < maxErrors {
		r.errs = append(r.errs, err)
	}
	r.mu.Unlock()
	r.cancel(err)
}

// failed reports whether the run has failed (or timed out).
func (r *runner) failed() bool { return r.ctx.Err() != nil }

// cause is why the run ended early, for wait loops.
func (r *runner) cause() error { return context.Cause(r.ctx) }

// open dials, installs the role's callbacks, sends CONNECT and registers
// the connection; the reader's end fails the run unless we asked for it.
func (r *runner) open(readSize int, hb frames.HeartBeat, setup func(c *conn)) (*conn, time.Duration, error) {
	c, err := dial(r.ctx, dialOptions{cfg: r.cfg, readSize: readSize, setup: func(c *conn) {
		c.onEnd = func(err error) {
			if err != nil {
				r.fail(err)
			}
		}
		if setup != nil {
			setup(c)
		}
	}})
	if err != nil {
		return nil, 0, err
	}
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	if r.failed() {
		// abortAll may have run before c was listed.
		c.abort()
		return nil, 0, r.cause()
	}
	send, err := c.connect(r.ctx, r.cfg, hb)
	if err != nil {
		return nil, 0, err
	}
	c.beatEvery.Store(int64(send))
	return c, send, nil
}

// abortAll closes every connection at once.
func (r *runner) abortAll() {
	r.mu.Lock()
	conns := r.conns
	r.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
}

// disconnectAll sends DISCONNECT on every connection, a few at a time,
// each waiting for its receipt within the run's bound.
func (r *runner) disconnectAll() {
	r.mu.Lock()
	conns := r.conns
	r.mu.Unlock()
	work := make(chan *conn)
	var wg sync.WaitGroup
	for range min(len(conns), 64) {
		wg.Go(func() {
			for c := range work {
				if err := c.disconnect(r.ctx); err != nil {
					r.fail(fmt.Errorf("disconnect: %w", err))
				}
			}
		})
	}
	for _, c := range conns {
		work <- c
	}
	close(work)
	wg.Wait()
}

// heartbeats keeps every connection's heart-beats going until the run
// ends: each tick (a tenth of the interval we offered) it sends an EOL on
// the connections whose negotiated interval is nine tenths gone since
// their last one. Connections opened at different times so beat at
// different times, instead of all at once, and none more often than
// needed. offered 0 means none.
func (r *runner) heartbeats(offered time.Duration) {
	if offered <= 0 {
		return
	}
	tick := min(max(offered/10, 10*time.Millisecond), time.Second)
	r.hb.Go(func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		due := make(map[*conn]time.Time) // when each connection beats next
		for {
			select {
			case <-r.ctx.Done():
				return
			case <-t.C:
			}
			r.mu.Lock()
			conns := r.conns
			r.mu.Unlock()
			now := time.Now()
			for _, c := range conns {
				every := time.Duration(c.beatEvery.Load())
				if every <= 0 || now.Before(due[c]) {
					continue // not negotiated (yet), or not due
				}
				if r.failed() {
					return
				}
				if err := c.heartbeat(); err != nil && !c.isClosing() {
					r.fail(fmt.Errorf("send heart-beat: %w", err))
					return
				}
				due[c] = now.Add(every * 9 / 10)
			}
		}
	})
}

// waitFor waits for ch or the run's end.
func (r *runner) waitFor(ch <-chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-r.ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, r.cause())
	}
}

// errAborted marks the end of a goroutine because the run already failed;
// it is never recorded.
var errAborted = errors.New("run aborted")

// goAll runs f(i) for i < n on n goroutines and waits for them; the first
// error fails the run.
func (r *runner) goAll(n int, f func(i int) error) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := f(i); err != nil && !errors.Is(err, errAborted) && !r.failed() {
				r.fail(err)
			}
		})
	}
	wg.Wait()
}
