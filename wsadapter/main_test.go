package wsadapter

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (socket feeders and drainers) must be gone
// when it ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
