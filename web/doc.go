// Package web owns the browser side of stompbox: the demo chat page in dist/
// (index.html, app.js, style.css) and the stomp.js client it runs on, all
// embedded into the binary and served by [Handler].
//
// The page talks to the broker only through @stomp/stompjs, pinned exactly in
// package.json with a committed package-lock.json. Its UMD bundle is not
// committed: `make web` runs `npm ci` and copies the bundle into
// dist/vendor/, which go:embed then picks up on the next `go build`. A binary
// built without that step still runs; its page answers 503 with the build
// instructions instead of a chat that cannot connect (see [Complete]).
//
// The page connects to ws(s)://<host>/ws on the host that served it, so the
// handler belongs on the same HTTP listener as the WebSocket endpoint. The
// package imports nothing of ours; server mounts it:
//
//	mux := http.NewServeMux()
//	mux.Handle("/ws", upgrade) // wsadapter's upgrade handler
//	mux.Handle("/", web.Handler())
//	if !web.Complete() {
//		logger.Warn("demo page not built; run `make web` and rebuild")
//	}
package web
