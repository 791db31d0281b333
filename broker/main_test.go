package broker

import (
	"testing"

	"go.uber.org/goleak"
)

// The broker starts no goroutines; this keeps it that way.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
