package clustertest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no server, route or client goroutine outlives the
// tests: Shutdown and the connections' Close must stop them all.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
