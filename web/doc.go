// Package web owns the browser side of stompbox, embedded into the binary:
// in dist/, served by [Handler],
//
//   - stompbox.js, an ES module on top of stomp.js that makes pages survive
//     network drops with stompbox's extensions: it keeps the session's
//     resume-token and each subscription's last offset and uses them on
//     reconnect (resume-after, no duplicate by offset), exposes presence as
//     events, honours reconnect-after and does not retry an ERROR with
//     retryable:false (docs/quickstart.md shows how to use it);
//   - the demo chat (index.html, app.js, style.css) on stompbox.js: recent
//     history on joining, who is online, no gap after a reconnect, a
//     "simulate network drop" button;
//   - the upload demo: upload.html sends a file in binary SEND chunks paced
//     by RECEIPTs, receive.html reassembles it and checks its SHA-256;
//   - the operator's console, in console/ and served by [ConsoleHandler] at
//     /console/ on the admin listener (behind the admin API's
//     authentication): live uPlot charts fed by /api/events, paged tables of
//     connections and destinations, actions and a peek view, all through
//     the admin API of the same origin. It loads uPlot from dist/vendor
//     (vendored by `make web` like stomp.js; see [ConsoleComplete]) and is
//     never offered to other origins.
//
// Scripts are served with Access-Control-Allow-Origin: * so that a page
// served from elsewhere can import stompbox.js (a module import is a CORS
// request).
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
