package web

import (
	"io"
	"net/http"
	"strconv"
)

// buildHint serves a binary built without the vendored stomp.js bundle: the
// page and the bundle's path explain how to build it, with 503 because the
// condition is fixed by rebuilding, not by the client. The other files are
// served as usual.
type buildHint struct {
	files fileServer
}

// hintText says what is missing and the two steps that fix it.
const hintText = "The stompbox demo page is not built into this binary: the stomp.js " +
	"browser client (dist/" + vendorBundle + " in package web) is missing.\n\n" +
	"To build it, run `" + buildCommand + "` in the stompbox source tree (it needs Node.js " +
	"and npm), then rebuild the binary (`go build ./cmd/stompbox`, or `make run`, " +
	"which does both).\n\n" +
	"The broker itself is unaffected: native STOMP and the WebSocket endpoint work.\n"

// hintHTML is hintText as a page.
const hintHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stompbox: demo page not built</title>
</head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Demo page not built</h1>
<p>The stompbox demo page is not built into this binary: the stomp.js browser
client (<code>dist/` + vendorBundle + `</code> in package <code>web</code>) is missing.</p>
<p>To build it, run <code>` + buildCommand + `</code> in the stompbox source tree (it needs
Node.js and npm), then rebuild the binary (<code>go build ./cmd/stompbox</code>, or
<code>make run</code>, which does both).</p>
<p>The broker itself is unaffected: native STOMP and the WebSocket endpoint work.</p>
</body>
</html>
`

func (h buildHint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/", "/index.html":
		if !allowMethod(w, r) {
			return
		}
		writeHint(w, r, "text/html; charset=utf-8", hintHTML)
	case "/" + vendorBundle:
		if !allowMethod(w, r) {
			return
		}
		// Plain text: with nosniff, a browser will not run it as a script,
		// and a developer opening the URL reads the fix.
		writeHint(w, r, "text/plain; charset=utf-8", hintText)
	default:
		h.files.ServeHTTP(w, r)
	}
}

// writeHint answers 503 with body, or with its headers only for HEAD.
func writeHint(w http.ResponseWriter, r *http.Request, contentType, body string) {
	setCommonHeaders(w)
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusServiceUnavailable)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}
