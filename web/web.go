package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// assets holds dist/ as it was at build time. The all: prefix keeps the
// pattern valid whether or not `make web` has populated dist/vendor, so the
// package compiles from a fresh clone.
//
//go:embed all:dist
var assets embed.FS

// distDir is the directory of the embedded tree that the handler serves as /.
const distDir = "dist"

// vendorBundle is the stomp.js UMD bundle inside distDir, copied there from
// node_modules/@stomp/stompjs/bundles by `make web`. index.html loads it by
// this relative path.
const vendorBundle = "vendor/stomp.umd.min.js"

// buildCommand is what a developer runs to produce the vendored bundle.
const buildCommand = "make web"

// Handler returns the handler that serves the demo pages from the embedded
// dist/ tree at /. Mount it at "/" on the HTTP listener that also serves the
// WebSocket endpoint: the page derives the broker URL from its own host.
//
// When the binary was built without the vendored stomp.js bundle, / and the
// bundle's path answer 503 Service Unavailable with instructions to build it;
// everything else in the broker is unaffected.
func Handler() http.Handler {
	return handlerFS(assets)
}

// Complete reports whether the embedded assets include the vendored stomp.js
// bundle, i.e. whether the demo page can work. Callers may log a warning when
// it is false.
func Complete() bool {
	return bundlePresent(mustSub(assets))
}

// handlerFS is Handler over any tree shaped like the embedded one (files
// under dist/), so tests can supply an fstest.MapFS with and without the
// bundle. The bundle's presence is decided once, here: an embedded tree
// cannot change at run time.
func handlerFS(fsys fs.FS) http.Handler {
	dist := mustSub(fsys)
	if !bundlePresent(dist) {
		return buildHint{files: fileServer{files: http.FileServerFS(dist)}}
	}
	return fileServer{files: http.FileServerFS(dist)}
}

// mustSub roots fsys at distDir. fs.Sub fails only on an invalid directory
// name, and distDir is a valid constant.
func mustSub(fsys fs.FS) fs.FS {
	sub, err := fs.Sub(fsys, distDir)
	if err != nil {
		panic("web: " + err.Error())
	}
	return sub
}

// bundlePresent reports whether dist holds a non-empty stomp.js bundle; an
// empty file (an interrupted copy) counts as missing.
func bundlePresent(dist fs.FS) bool {
	info, err := fs.Stat(dist, vendorBundle)
	return err == nil && info.Mode().IsRegular() && info.Size() > 0
}

// fileServer serves the embedded files with the headers every response of
// this package carries, and without directory listings.
type fileServer struct {
	files http.Handler
}

func (s fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	setCommonHeaders(w)
	if strings.HasSuffix(r.URL.Path, ".js") {
		// Scripts (stomp.js, stompbox.js) may be imported by pages served
		// from elsewhere: an ES module import is a CORS request. They are
		// public files, fetched without credentials.
		w.Header().Set("Access-Control-Allow-Origin", "*")
	}
	// Directories other than the root (which serves index.html) are not
	// pages; http.FileServer would list them.
	if r.URL.Path != "/" && strings.HasSuffix(r.URL.Path, "/") {
		http.NotFound(w, r)
		return
	}
	s.files.ServeHTTP(w, r)
}

// allowMethod answers 405 to anything but GET and HEAD: the handler is
// mounted at "/", so it sees every request no other route claimed.
func allowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// setCommonHeaders makes browsers revalidate (the files change with every
// build of the binary, and embedded files carry no modification time) and
// forbids content sniffing, so a 503 text answer is never run as a script.
func setCommonHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
}
