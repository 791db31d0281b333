package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

// Stand-ins for the console's files and the vendored uPlot.
const (
	fakeConsoleIndex = `<!doctype html><title>stompbox console</title>`
	fakeConsoleJS    = `"use strict"; // console`
	fakeConsoleCSS   = `body { margin: 0 }`
	fakeUPlot        = `var uPlot=function(){}();`
	fakeUPlotCSS     = `.uplot{display:block}`
)

// consoleFS is a tree shaped like consoleAssets.
func consoleFS() fstest.MapFS {
	return fstest.MapFS{
		"console/index.html":  {Data: []byte(fakeConsoleIndex)},
		"console/console.js":  {Data: []byte(fakeConsoleJS)},
		"console/console.css": {Data: []byte(fakeConsoleCSS)},
	}
}

// vendorFS is a tree shaped like the embedded dist/, with uPlot when
// withUPlot is set (stomp.js always: the console must not serve it).
func vendorFS(withUPlot bool) fstest.MapFS {
	m := distFS(true)
	if withUPlot {
		m["dist/vendor/uPlot.iife.min.js"] = &fstest.MapFile{Data: []byte(fakeUPlot)}
		m["dist/vendor/uPlot.min.css"] = &fstest.MapFile{Data: []byte(fakeUPlotCSS)}
		m["dist/vendor/uPlot.LICENSE.txt"] = &fstest.MapFile{Data: []byte("The MIT License")}
	}
	return m
}

func TestConsoleHandler(t *testing.T) {
	emptyUPlot := vendorFS(false)
	emptyUPlot["dist/vendor/uPlot.iife.min.js"] = &fstest.MapFile{} // an interrupted copy

	tests := []struct {
		name        string
		dist        fs.FS
		method      string
		path        string
		wantStatus  int
		wantType    string // substring of Content-Type; "" = not checked
		wantBody    []string
		notWantBody []string
	}{
		// Built with `make web`.
		{name: "complete/root", dist: vendorFS(true), path: "/console/",
			wantStatus: http.StatusOK, wantType: "text/html",
			wantBody: []string{fakeConsoleIndex}, notWantBody: []string{"make web"}},
		{name: "complete/index.html redirects to the root", dist: vendorFS(true), path: "/console/index.html",
			wantStatus: http.StatusMovedPermanently},
		{name: "complete/head root", dist: vendorFS(true), method: http.MethodHead, path: "/console/",
			wantStatus: http.StatusOK, wantType: "text/html"},
		{name: "complete/script", dist: vendorFS(true), path: "/console/console.js",
			wantStatus: http.StatusOK, wantType: "javascript", wantBody: []string{fakeConsoleJS}},
		{name: "complete/style", dist: vendorFS(true), path: "/console/console.css",
			wantStatus: http.StatusOK, wantType: "text/css", wantBody: []string{fakeConsoleCSS}},
		{name: "complete/uPlot", dist: vendorFS(true), path: "/console/vendor/uPlot.iife.min.js",
			wantStatus: http.StatusOK, wantType: "javascript", wantBody: []string{fakeUPlot}},
		{name: "complete/uPlot css", dist: vendorFS(true), path: "/console/vendor/uPlot.min.css",
			wantStatus: http.StatusOK, wantType: "text/css", wantBody: []string{fakeUPlotCSS}},
		{name: "complete/uPlot licence", dist: vendorFS(true), path: "/console/vendor/uPlot.LICENSE.txt",
			wantStatus: http.StatusOK, wantType: "text/plain", wantBody: []string{"MIT"}},
		{name: "complete/stomp.js is not the console's", dist: vendorFS(true), path: "/console/" + vendorBundle,
			wantStatus: http.StatusNotFound, notWantBody: []string{fakeBundle}},
		{name: "complete/no vendor listing", dist: vendorFS(true), path: "/console/vendor/",
			wantStatus: http.StatusNotFound, notWantBody: []string{"uPlot"}},
		{name: "complete/no traversal into dist", dist: vendorFS(true), path: "/console/vendor/../index.html",
			wantStatus: http.StatusNotFound, notWantBody: []string{fakeIndex}},
		{name: "complete/unknown file", dist: vendorFS(true), path: "/console/nope.js",
			wantStatus: http.StatusNotFound},
		{name: "complete/outside the prefix", dist: vendorFS(true), path: "/index.html",
			wantStatus: http.StatusNotFound},
		{name: "complete/post refused", dist: vendorFS(true), method: http.MethodPost, path: "/console/",
			wantStatus: http.StatusMethodNotAllowed},

		// Built without `make web`: the page explains, its own files still serve.
		{name: "missing/root", dist: vendorFS(false), path: "/console/",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html",
			wantBody:    []string{"<title>stompbox: console not built</title>", "<code>make web</code>", "uPlot.iife.min.js"},
			notWantBody: []string{fakeConsoleIndex}},
		{name: "missing/index.html", dist: vendorFS(false), path: "/console/index.html",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html"},
		{name: "missing/head root", dist: vendorFS(false), method: http.MethodHead, path: "/console/",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html"},
		{name: "missing/uPlot", dist: vendorFS(false), path: "/console/vendor/uPlot.iife.min.js",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/plain",
			wantBody: []string{"`make web`", "rebuild the binary"}},
		{name: "missing/empty uPlot counts as missing", dist: emptyUPlot, path: "/console/",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html"},
		{name: "missing/script still served", dist: vendorFS(false), path: "/console/console.js",
			wantStatus: http.StatusOK, wantType: "javascript", wantBody: []string{fakeConsoleJS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			rec := httptest.NewRecorder()
			consoleHandlerFS(consoleFS(), tt.dist).ServeHTTP(rec, httptest.NewRequest(method, tt.path, nil))
			res := rec.Result()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d; body:\n%s", res.StatusCode, tt.wantStatus, body)
			}
			if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want it to contain %q", ct, tt.wantType)
			}
			for _, s := range tt.wantBody {
				if !strings.Contains(string(body), s) {
					t.Errorf("body lacks %q; body:\n%s", s, body)
				}
			}
			for _, s := range tt.notWantBody {
				if strings.Contains(string(body), s) {
					t.Errorf("body contains %q; body:\n%s", s, body)
				}
			}
			if method == http.MethodHead && len(body) != 0 {
				t.Errorf("HEAD body = %d bytes, want none", len(body))
			}
			if res.StatusCode == http.StatusMethodNotAllowed && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want %q", res.Header.Get("Allow"), "GET, HEAD")
			}
			if res.StatusCode == http.StatusOK || res.StatusCode == http.StatusServiceUnavailable {
				if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
				}
			}
			if res.StatusCode == http.StatusOK && res.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("X-Frame-Options = %q, want DENY", res.Header.Get("X-Frame-Options"))
			}
			// The console is private: no script of it is offered to other origins.
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("Access-Control-Allow-Origin = %q, want none", got)
			}
		})
	}
}

// TestConsoleEmbedded checks the real embedded console: the committed files
// are there, the page loads what the handler serves and carries the test
// ids the browser test relies on, and the script never assigns innerHTML
// (every API string goes through textContent).
func TestConsoleEmbedded(t *testing.T) {
	index, err := fs.ReadFile(consoleAssets, consoleDir+"/index.html")
	if err != nil {
		t.Fatalf("embedded console index.html: %v", err)
	}
	page := string(index)
	for _, want := range []string{
		`src="vendor/uPlot.iife.min.js"`, `href="vendor/uPlot.min.css"`,
		`src="console.js"`, `href="console.css"`,
		`data-testid="chart-rates"`, `data-testid="chart-connections"`,
		`data-testid="chart-queued"`, `data-testid="chart-fsync"`,
		`data-testid="connections-table"`, `data-testid="destinations-table"`,
		`data-testid="connections-filter"`, `data-testid="destinations-filter"`,
		`data-testid="confirm-dialog"`, `data-testid="confirm-reason"`, `data-testid="confirm-ok"`,
		`data-testid="peek"`, `data-testid="result"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("console index.html lacks %s", want)
		}
	}
	script, err := fs.ReadFile(consoleAssets, consoleDir+"/console.js")
	if err != nil {
		t.Fatalf("embedded console.js: %v", err)
	}
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
		if strings.Contains(string(script), banned) {
			t.Errorf("console.js uses %s: API data must go through textContent", banned)
		}
	}

	wantRoot := http.StatusServiceUnavailable
	if ConsoleComplete() {
		wantRoot = http.StatusOK
	}
	h := ConsoleHandler()
	for path, want := range map[string]int{
		"/console/":            wantRoot,
		"/console/console.js":  http.StatusOK,
		"/console/console.css": http.StatusOK,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d (ConsoleComplete() = %v)", path, rec.Code, want, ConsoleComplete())
		}
	}
}
