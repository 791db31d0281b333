package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// consoleAssets holds the admin console's own files (HTML, script, style).
// They are committed, unlike the uPlot files they load, which `make web`
// vendors into dist/vendor next to stomp.js.
//
//go:embed console
var consoleAssets embed.FS

// ConsolePrefix is the path the console is served under on the admin
// listener; ConsoleHandler expects requests with this prefix.
const ConsolePrefix = "/console/"

// consoleDir is the directory of consoleAssets that holds the console.
const consoleDir = "console"

// consoleVendorPrefix is where, under ConsolePrefix, the console loads its
// vendored files: /console/vendor/uPlot.iife.min.js is dist/vendor/... .
const consoleVendorPrefix = "vendor/"

// Only these vendored files are served by the console: the console needs no
// other, and the demo's stomp.js has its own handler.
var consoleVendorFiles = map[string]bool{
	"uPlot.iife.min.js": true,
	"uPlot.min.css":     true,
	"uPlot.LICENSE.txt": true,
}

// uplotBundle is the vendored file whose absence means the console cannot
// draw its charts; the hint page then replaces it.
const uplotBundle = "uPlot.iife.min.js"

// ConsoleHandler returns the handler of the admin console: the page at
// /console/, its script and style, and the vendored uPlot under
// /console/vendor/. Mount it at ConsolePrefix on the admin listener, behind
// the admin API's authentication: the page fetches /api with the browser's
// credentials.
//
// When the binary was built without the vendored uPlot, /console/ and the
// bundle's path answer 503 with instructions to build it (as the demo page
// does for stomp.js); the admin API is unaffected.
func ConsoleHandler() http.Handler {
	return consoleHandlerFS(consoleAssets, assets)
}

// ConsoleComplete reports whether the embedded assets include the vendored
// uPlot, i.e. whether the console can draw its charts.
func ConsoleComplete() bool {
	return consoleBundlePresent(mustSub(assets))
}

// consoleHandlerFS is ConsoleHandler over any trees shaped like the
// embedded ones (console files under console/, vendored files under
// dist/vendor/), so tests can supply them with and without uPlot.
func consoleHandlerFS(consoleFS, distFS fs.FS) http.Handler {
	own, err := fs.Sub(consoleFS, consoleDir)
	if err != nil {
		panic("web: " + err.Error()) // consoleDir is a valid constant
	}
	dist := mustSub(distFS)
	return consoleHandler{
		own:      http.FileServerFS(own),
		vendor:   http.FileServerFS(dist),
		complete: consoleBundlePresent(dist),
	}
}

// consoleBundlePresent reports whether dist holds a non-empty uPlot bundle;
// an empty file (an interrupted copy) counts as missing.
func consoleBundlePresent(dist fs.FS) bool {
	info, err := fs.Stat(dist, consoleVendorPrefix+uplotBundle)
	return err == nil && info.Mode().IsRegular() && info.Size() > 0
}

// consoleHandler routes a /console/ request to the console's files or to the
// vendored ones. complete is decided once: embedded trees do not change.
type consoleHandler struct {
	own, vendor http.Handler
	complete    bool
}

func (h consoleHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, ConsolePrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if !h.complete && (rest == "" || rest == "index.html" || rest == consoleVendorPrefix+uplotBundle) {
		if rest == consoleVendorPrefix+uplotBundle {
			writeHint(w, r, "text/plain; charset=utf-8", consoleHintText)
		} else {
			writeHint(w, r, "text/html; charset=utf-8", consoleHintHTML)
		}
		return
	}
	setCommonHeaders(w)
	// The console reads operator data: no framing by other sites, no
	// referrer leaking its URLs.
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if name, isVendor := strings.CutPrefix(rest, consoleVendorPrefix); isVendor {
		if !consoleVendorFiles[name] {
			http.NotFound(w, r)
			return
		}
		serveRooted(h.vendor, w, r, "/"+rest)
		return
	}
	// Subdirectories are not pages; http.FileServer would list them.
	if strings.Contains(rest, "/") {
		http.NotFound(w, r)
		return
	}
	serveRooted(h.own, w, r, "/"+rest)
}

// serveRooted serves r from files as if its path were path: the file
// servers are rooted at their trees, the request at ConsolePrefix.
func serveRooted(files http.Handler, w http.ResponseWriter, r *http.Request, path string) {
	r2 := r.Clone(r.Context())
	r2.URL.Path = path
	r2.URL.RawPath = ""
	files.ServeHTTP(w, r2)
}

// consoleHintText says what is missing and how to build it.
const consoleHintText = "The stompbox console is not built into this binary: uPlot " +
	"(dist/" + consoleVendorPrefix + uplotBundle + " in package web) is missing.\n\n" +
	"To build it, run `" + buildCommand + "` in the stompbox source tree (it needs Node.js " +
	"and npm), then rebuild the binary (`go build ./cmd/stompbox`).\n\n" +
	"The admin API (/api/...), /metrics and the probes are unaffected.\n"

// consoleHintHTML is consoleHintText as a page.
const consoleHintHTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stompbox: console not built</title>
</head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Console not built</h1>
<p>The stompbox console is not built into this binary: uPlot
(<code>dist/` + consoleVendorPrefix + uplotBundle + `</code> in package <code>web</code>) is missing.</p>
<p>To build it, run <code>` + buildCommand + `</code> in the stompbox source tree (it needs
Node.js and npm), then rebuild the binary (<code>go build ./cmd/stompbox</code>).</p>
<p>The admin API (<code>/api/...</code>), <code>/metrics</code> and the probes are unaffected.</p>
</body>
</html>
`
