package server

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a server starts must be gone when its test ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
