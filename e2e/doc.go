// Package e2e holds stompbox's cross-process tests: a real stompbox binary,
// built from ./cmd/stompbox and run as a child process, driven by other
// clients and processes. Today: interop with Python's stomp.py (Debian's
// python3-stomp) and with go-stomp through the same broker; later the
// browser (stomp.js in headless Chromium) and crash/restart suites.
//
// The tests carry the build tag e2e, so `go test ./...` skips them; run
//
//	make e2e
//
// which installs python3-stomp with apt-get when it is missing and then runs
// go test -tags e2e -race -count=1 ./e2e/... with Debian's /usr/bin/python3
// (STOMPBOX_E2E_PYTHON overrides the interpreter).
package e2e
