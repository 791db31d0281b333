// Package e2e holds stompbox's cross-process tests: a real stompbox binary,
// built from ./cmd/stompbox and run as a child process, driven by other
// clients and processes:
//
//   - interop with Python's stomp.py (Debian's python3-stomp) and with
//     go-stomp through the same broker (python_test.go);
//   - stomp.js in headless Chromium (Debian's chromium, driven with
//     chromedp): scenario scripts in a page the broker served, and the demo
//     chat used through its UI (browser_test.go and browser_*_test.go;
//     Chromium and tabs in chromium_test.go; the page-side helpers in
//     testdata/browser_harness.js);
//   - stompbox.js, the reconnect-proof module of package web: against a
//     scripted server (browser_module_test.go), and against real brokers
//     with the network cut through CDP under load, presence grace periods,
//     5 minutes without page scripts, and the upload demo
//     (browser_resume_test.go, browser_presence_test.go,
//     browser_background_test.go, browser_upload_test.go; the scenario page
//     is testdata/module, served with web/dist by the test itself);
//   - cluster mode: stompbox processes joined with -cluster-nats to a real
//     nats-server process (built from the version go.mod pins), used by
//     stomp.js and go-stomp on different nodes, with a node and then NATS
//     killed (cluster_test.go, cluster_helpers_test.go).
//
// Later: the crash/restart suite.
//
// The tests carry the build tag e2e, so `go test ./...` skips them; run
//
//	make e2e
//
// which installs python3-stomp and chromium with apt-get when they are
// missing, builds the demo page's stomp.js bundle (make web) and then runs
// go test -tags e2e -race -count=1 ./e2e/... with Debian's /usr/bin/python3
// (STOMPBOX_E2E_PYTHON overrides the interpreter, STOMPBOX_E2E_CHROMIUM the
// browser).
package e2e
