//go:build e2e && race

package e2e

// raceEnabled: the tests run with -race, so the broker is built with it too.
const raceEnabled = true
