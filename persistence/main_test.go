package persistence

import (
	"testing"

	"go.uber.org/goleak"
)

// Every File stops its flusher and compactor in Close; this checks it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
