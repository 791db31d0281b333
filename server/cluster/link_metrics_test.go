package cluster

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// expectLinkMetrics compares the link's series with the given values.
func expectLinkMetrics(t *testing.T, reg *prometheus.Registry, connected, disconnects, reconnects int) {
	t.Helper()
	want := `
# HELP stompbox_cluster_info Always 1; the labels name the cluster and this node.
# TYPE stompbox_cluster_info gauge
stompbox_cluster_info{cluster="metrics",node="m1"} 1
# HELP stompbox_cluster_nats_connected 1 while the node is connected to NATS, 0 while it is reconnecting.
# TYPE stompbox_cluster_nats_connected gauge
stompbox_cluster_nats_connected ` + itoa(connected) + `
# HELP stompbox_cluster_nats_disconnects_total Times the node lost its NATS connection.
# TYPE stompbox_cluster_nats_disconnects_total counter
stompbox_cluster_nats_disconnects_total ` + itoa(disconnects) + `
# HELP stompbox_cluster_nats_reconnects_total Times the node reconnected to NATS after losing the connection.
# TYPE stompbox_cluster_nats_reconnects_total counter
stompbox_cluster_nats_reconnects_total ` + itoa(reconnects) + `
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestLinkMetricsAcrossOutage(t *testing.T) {
	n := clustertest.StartNATS(t, 1)
	reg := prometheus.NewRegistry()
	l := mustOpen(t, Config{URLs: n.URLs(), Name: "metrics", NodeName: "m1", Registerer: reg})
	waitReady(t, l, 10*time.Second)
	expectLinkMetrics(t, reg, 1, 0, 0)

	n.Kill(0)
	waitFor(t, 10*time.Second, "link sees the outage", func() bool { return !l.connected() })
	// The disconnect handler runs on nats.go's callback goroutine, after
	// the status changed: wait for its count.
	waitFor(t, 5*time.Second, "disconnect counted", func() bool {
		return testutil.ToFloat64(l.metrics.disconnects) == 1
	})
	expectLinkMetrics(t, reg, 0, 1, 0)
	if err := l.ready(context.Background()); err == nil || !strings.Contains(err.Error(), "not connected to NATS") {
		t.Fatalf("ready during the outage: %v", err)
	}
	// No buffering: a publish during the outage fails at once.
	start := time.Now()
	if err := l.nc.Publish("x", []byte("lost")); err == nil {
		t.Fatal("publish during the outage succeeded")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("publish during the outage took %s", d)
	}

	n.Restart(0)
	waitFor(t, 10*time.Second, "link reconnects by itself", l.connected)
	waitFor(t, 5*time.Second, "reconnect counted", func() bool {
		return testutil.ToFloat64(l.metrics.reconnects) == 1
	})
	expectLinkMetrics(t, reg, 1, 1, 1)
	waitReady(t, l, 10*time.Second)

	// close unregisters, so a new link on the same registry registers.
	closeLink(t, l)
	if got, err := testutil.GatherAndCount(reg); err != nil || got != 0 {
		t.Fatalf("series after close: %d %v", got, err)
	}
	l2 := mustOpen(t, Config{URLs: n.URLs(), Name: "metrics", NodeName: "m1", Registerer: reg})
	closeLink(t, l2)
}

func TestLinkMetricsRegisterConflict(t *testing.T) {
	n := clustertest.StartNATS(t, 1)
	reg := prometheus.NewRegistry()
	l := mustOpen(t, Config{URLs: n.URLs(), Name: "metrics", NodeName: "m1", Registerer: reg})
	defer closeLink(t, l)
	// A second node on the same registry is a wiring mistake: said, not
	// hidden.
	_, err := openLink(context.Background(), Config{URLs: n.URLs(), Name: "metrics", NodeName: "m2", Registerer: reg})
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Fatalf("second link on one registry: %v", err)
	}
}
