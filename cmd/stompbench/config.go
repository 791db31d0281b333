package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// The scenarios -scenario accepts.
const (
	ScenarioQueue      = "queue"
	ScenarioTopic      = "topic"
	ScenarioLatency    = "latency"
	ScenarioPersistent = "persistent"
	ScenarioIdle       = "idle"
)

// Config is one run of the load generator, as the flags describe it.
type Config struct {
	Scenario    string        `json:"scenario"`    // queue, topic, latency, persistent or idle
	URL         string        `json:"url"`         // stomp://host:port or ws://host:port/path
	Producers   int           `json:"producers"`   // queue, persistent
	Consumers   int           `json:"consumers"`   // queue, persistent
	Subscribers int           `json:"subscribers"` // topic
	Prefetch    int           `json:"prefetch"`    // prefetch-count of each queue consumer
	Messages    int           `json:"messages"`    // per producer (queue, topic, persistent)
	BodySize    int           `json:"body_size"`   // bytes per message body
	Rate        int           `json:"rate"`        // msgs/s (latency)
	Duration    time.Duration `json:"duration_ns"` // sending (latency) or holding (idle)
	Window      int           `json:"window"`      // SENDs awaiting a RECEIPT per producer (persistent)
	Connections int           `json:"connections"` // idle
	HeartBeat   string        `json:"heartbeat"`   // offered by idle connections: "send,receive"
	BrokerPID   int           `json:"broker_pid"`  // whose CPU (and, idle, RSS) to read (0: none)
	Login       string        `json:"login"`       // CONNECT login
	Passcode    string        `json:"-"`           // CONNECT passcode, never printed
	Host        string        `json:"host"`        // CONNECT host: the virtual host
	Destination string        `json:"destination"` // default by scenario
	Timeout     time.Duration `json:"timeout_ns"`  // bound on the whole run
	Warmup      time.Duration `json:"warmup_ns"`   // not measured (every message still checked)
	JSON        bool          `json:"-"`           // print JSON instead of a table
	// Scrape lists URLs (comma-separated) fetched every ScrapeEvery while
	// the scenario runs: what watching the broker costs it.
	Scrape      string        `json:"scrape,omitempty"`
	ScrapeEvery time.Duration `json:"scrape_every_ns,omitempty"`
	ScrapeAuth  string        `json:"-"` // Authorization header of each scrape, never printed

	// Derived by Validate, not flags.
	transport  string // "tcp" or "ws"
	address    string // host:port for TCP
	heartBeat  frames.HeartBeat
	scrapeURLs []string
}

// Transport is "tcp" or "ws", from the URL's scheme (after Validate).
func (c *Config) Transport() string { return c.transport }

// DefaultConfig returns the flags' defaults; Validate picks the default
// destination, which depends on the scenario.
func DefaultConfig() Config {
	return Config{
		Scenario:    ScenarioQueue,
		URL:         "stomp://127.0.0.1:61613",
		Producers:   1,
		Consumers:   1,
		Subscribers: 100,
		Prefetch:    100,
		Messages:    100000,
		BodySize:    128,
		Rate:        10000,
		Duration:    10 * time.Second,
		Window:      64,
		Connections: 1000,
		HeartBeat:   "10s,10s",
		Host:        "/",
		Timeout:     5 * time.Minute,
		ScrapeEvery: time.Second,
	}
}

// ParseFlags reads the command line into a validated Config; -h gives
// flag.ErrHelp.
func ParseFlags(args []string, usage io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("stompbench", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "queue, topic, latency, persistent or idle")
	fs.StringVar(&c.URL, "url", c.URL, "broker: stomp://host:port (TCP) or ws://host:port/path (WebSocket, subprotocol v12.stomp)")
	fs.IntVar(&c.Producers, "producers", c.Producers, "producers (queue, persistent)")
	fs.IntVar(&c.Consumers, "consumers", c.Consumers, "consumers (queue, persistent)")
	fs.IntVar(&c.Subscribers, "subscribers", c.Subscribers, "subscribers (topic)")
	fs.IntVar(&c.Prefetch, "prefetch", c.Prefetch, "prefetch-count of each consumer (queue, persistent; ack client-individual)")
	fs.IntVar(&c.Messages, "messages", c.Messages, "messages per producer (queue, topic, persistent)")
	fs.IntVar(&c.BodySize, "body-size", c.BodySize, "body bytes of each message")
	fs.IntVar(&c.Rate, "rate", c.Rate, "messages per second (latency)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long to send (latency) or hold the connections (idle)")
	fs.IntVar(&c.Window, "window", c.Window, "SENDs awaiting their RECEIPT per producer (persistent)")
	fs.IntVar(&c.Connections, "connections", c.Connections, "connections to open (idle)")
	fs.StringVar(&c.HeartBeat, "heartbeat", c.HeartBeat, "heart-beat offered in CONNECT: send,receive (idle; the other scenarios offer 0,0)")
	fs.IntVar(&c.BrokerPID, "broker-pid", 0, "broker process id, for its CPU during the run (and, idle, its RSS) from /proc")
	fs.StringVar(&c.Scrape, "scrape", "", "URLs (comma-separated) to GET every -scrape-every while the scenario runs, e.g. the broker's admin API: a failed scrape fails the run")
	fs.DurationVar(&c.ScrapeEvery, "scrape-every", c.ScrapeEvery, "interval of -scrape")
	fs.StringVar(&c.ScrapeAuth, "scrape-auth", "", "Authorization header of each -scrape request, e.g. \"Bearer TOKEN\"")
	fs.StringVar(&c.Login, "login", "", "CONNECT login")
	fs.StringVar(&c.Passcode, "passcode", "", "CONNECT passcode")
	fs.StringVar(&c.Host, "host", c.Host, "CONNECT host header: the virtual host (stompbox and RabbitMQ both default to /)")
	fs.StringVar(&c.Destination, "destination", "", "destination (default /queue/stompbench, or /topic/stompbench for topic and idle)")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "bound on the whole run")
	fs.DurationVar(&c.Warmup, "warmup", 0, "time from the first send not measured (rates, latencies); every message is still checked")
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object instead of a table")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

// Validate checks c, fills in the defaults that depend on other fields and
// derives the transport; it reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	switch c.Scenario {
	case ScenarioQueue, ScenarioTopic, ScenarioLatency, ScenarioPersistent, ScenarioIdle:
	default:
		check(false, "-scenario %q: want queue, topic, latency, persistent or idle", c.Scenario)
	}
	if err := c.parseURL(); err != nil {
		errs = append(errs, err)
	}
	check(c.Producers > 0, "-producers must be positive")
	check(c.Consumers > 0, "-consumers must be positive")
	check(c.Subscribers > 0, "-subscribers must be positive")
	check(c.Prefetch > 0, "-prefetch must be positive")
	check(c.Messages > 0, "-messages must be positive")
	check(c.BodySize >= 0, "-body-size must not be negative")
	check(c.Rate > 0, "-rate must be positive")
	check(c.Duration > 0, "-duration must be positive")
	check(c.Window > 0, "-window must be positive")
	check(c.Connections > 0, "-connections must be positive")
	check(c.Timeout > 0, "-timeout must be positive")
	check(c.Warmup >= 0, "-warmup must not be negative")
	check(c.BrokerPID >= 0, "-broker-pid must not be negative")
	c.scrapeURLs = nil
	for u := range strings.SplitSeq(c.Scrape, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		pu, err := url.Parse(u)
		check(err == nil && (pu.Scheme == "http" || pu.Scheme == "https") && pu.Host != "", "-scrape %q: want http(s)://host:port/path", u)
		c.scrapeURLs = append(c.scrapeURLs, u)
	}
	check(c.ScrapeEvery > 0, "-scrape-every must be positive")
	hb, err := parseHeartBeat(c.HeartBeat)
	if err != nil {
		errs = append(errs, err)
	}
	c.heartBeat = hb
	if c.Destination == "" {
		c.Destination = "/queue/stompbench"
		if c.Scenario == ScenarioTopic || c.Scenario == ScenarioIdle {
			c.Destination = "/topic/stompbench"
		}
	}
	return errors.Join(errs...)
}

// parseURL derives transport and address from c.URL.
func (c *Config) parseURL() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	if u.Host == "" || u.Port() == "" {
		return fmt.Errorf("-url %q: want stomp://host:port or ws://host:port/path", c.URL)
	}
	switch u.Scheme {
	case "stomp", "tcp":
		c.transport = "tcp"
	case "ws":
		c.transport = "ws"
	default:
		return fmt.Errorf("-url %q: scheme %q not supported (stomp or ws)", c.URL, u.Scheme)
	}
	c.address = u.Host
	return nil
}

// parseHeartBeat reads "send,receive" as two durations ("10s,10s") or as
// milliseconds ("10000,10000", as on the wire).
func parseHeartBeat(s string) (frames.HeartBeat, error) {
	send, recv, ok := strings.Cut(s, ",")
	if !ok {
		return frames.HeartBeat{}, fmt.Errorf("-heartbeat %q: want send,receive (10s,10s)", s)
	}
	parse := func(v string) (time.Duration, error) {
		v = strings.TrimSpace(v)
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return d, nil
		}
		var ms int64
		if _, err := fmt.Sscan(v, &ms); err != nil || ms < 0 {
			return 0, fmt.Errorf("-heartbeat %q: %q is not a duration", s, v)
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	var hb frames.HeartBeat
	var err error
	if hb.Send, err = parse(send); err != nil {
		return hb, err
	}
	if hb.Receive, err = parse(recv); err != nil {
		return hb, err
	}
	return hb, nil
}
