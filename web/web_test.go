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

// Small stand-ins for the real files: the handler must not care what is in them.
const (
	fakeIndex  = `<!doctype html><title>stompbox chat</title><ul id="messages"></ul>`
	fakeApp    = `"use strict"; // app`
	fakeStyle  = `body { margin: 0 }`
	fakeBundle = `!function(e,t){}(this,function(e){e.StompJs={}});`
)

// distFS returns a tree shaped like the embedded one, with the stomp.js
// bundle when withBundle is set.
func distFS(withBundle bool) fstest.MapFS {
	m := fstest.MapFS{
		"dist/index.html": {Data: []byte(fakeIndex)},
		"dist/app.js":     {Data: []byte(fakeApp)},
		"dist/style.css":  {Data: []byte(fakeStyle)},
	}
	if withBundle {
		m["dist/"+vendorBundle] = &fstest.MapFile{Data: []byte(fakeBundle)}
		m["dist/vendor/stomp.LICENSE.txt"] = &fstest.MapFile{Data: []byte("Apache License")}
	}
	return m
}

func TestHandler(t *testing.T) {
	emptyBundle := distFS(false)
	emptyBundle["dist/"+vendorBundle] = &fstest.MapFile{} // an interrupted copy

	tests := []struct {
		name        string
		fsys        fs.FS
		method      string
		path        string
		wantStatus  int
		wantType    string // substring of Content-Type; "" = not checked
		wantBody    []string
		notWantBody []string
	}{
		// Built without `make web`: the page explains, the rest still serves.
		{name: "missing/root", fsys: distFS(false), path: "/",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html",
			wantBody:    []string{"<title>stompbox: demo page not built</title>", "<code>make web</code>", "rebuild the binary", vendorBundle},
			notWantBody: []string{fakeIndex}},
		{name: "missing/index.html", fsys: distFS(false), path: "/index.html",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html",
			wantBody: []string{"<code>make web</code>"}},
		{name: "missing/bundle", fsys: distFS(false), path: "/" + vendorBundle,
			wantStatus: http.StatusServiceUnavailable, wantType: "text/plain",
			wantBody: []string{"`make web`", "rebuild the binary"}},
		{name: "missing/head root", fsys: distFS(false), method: http.MethodHead, path: "/",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html"},
		{name: "missing/empty bundle counts as missing", fsys: emptyBundle, path: "/",
			wantStatus: http.StatusServiceUnavailable, wantType: "text/html",
			wantBody: []string{"make web"}},
		{name: "missing/app.js still served", fsys: distFS(false), path: "/app.js",
			wantStatus: http.StatusOK, wantType: "javascript",
			wantBody: []string{fakeApp}},
		{name: "missing/post refused", fsys: distFS(false), method: http.MethodPost, path: "/",
			wantStatus: http.StatusMethodNotAllowed},

		// Built with `make web`.
		{name: "complete/root", fsys: distFS(true), path: "/",
			wantStatus: http.StatusOK, wantType: "text/html",
			wantBody:    []string{fakeIndex},
			notWantBody: []string{"make web"}},
		{name: "complete/index.html redirects to root", fsys: distFS(true), path: "/index.html",
			wantStatus: http.StatusMovedPermanently},
		{name: "complete/head root", fsys: distFS(true), method: http.MethodHead, path: "/",
			wantStatus: http.StatusOK, wantType: "text/html"},
		{name: "complete/app.js", fsys: distFS(true), path: "/app.js",
			wantStatus: http.StatusOK, wantType: "javascript",
			wantBody: []string{fakeApp}},
		{name: "complete/style.css", fsys: distFS(true), path: "/style.css",
			wantStatus: http.StatusOK, wantType: "text/css",
			wantBody: []string{fakeStyle}},
		{name: "complete/bundle", fsys: distFS(true), path: "/" + vendorBundle,
			wantStatus: http.StatusOK, wantType: "javascript",
			wantBody: []string{fakeBundle}},
		{name: "complete/no directory listing", fsys: distFS(true), path: "/vendor/",
			wantStatus:  http.StatusNotFound,
			notWantBody: []string{"stomp.umd.min.js"}},
		{name: "complete/unknown path", fsys: distFS(true), path: "/nope.js",
			wantStatus: http.StatusNotFound},
		{name: "complete/put refused", fsys: distFS(true), method: http.MethodPut, path: "/app.js",
			wantStatus: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			rec := httptest.NewRecorder()
			handlerFS(tt.fsys).ServeHTTP(rec, httptest.NewRequest(method, tt.path, nil))
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
			if res.StatusCode == http.StatusMethodNotAllowed {
				if got := res.Header.Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow = %q, want %q", got, "GET, HEAD")
				}
			}
			wantCORS := ""
			// Scripts carry it (a page elsewhere may import stompbox.js); the
			// build hint served in place of a missing bundle does not.
			if strings.HasSuffix(tt.path, ".js") && method == http.MethodGet && res.StatusCode != http.StatusServiceUnavailable {
				wantCORS = "*"
			}
			if got := res.Header.Get("Access-Control-Allow-Origin"); got != wantCORS {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, wantCORS)
			}
			if res.StatusCode == http.StatusOK || res.StatusCode == http.StatusServiceUnavailable {
				if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
				}
			}
		})
	}
}

// TestEmbedded checks the real embedded tree: the committed files are there,
// index.html loads what the handler serves and carries the element ids the
// browser tests rely on, and / answers according to whether `make web` ran
// before this test binary was built.
func TestEmbedded(t *testing.T) {
	index, err := fs.ReadFile(assets, distDir+"/index.html")
	if err != nil {
		t.Fatalf("embedded index.html: %v", err)
	}
	page := string(index)
	for _, want := range []string{
		`src="` + vendorBundle + `"`, `src="app.js"`, `href="style.css"`,
		`id="name"`, `id="room"`, `id="text"`, `id="send"`, `id="messages"`,
		`id="state"`, `id="close-code"`, `id="error"`,
		`id="members"`, `id="online-count"`, `id="drop"`,
		`type="module" src="app.js"`, `href="upload.html"`, `href="receive.html"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("index.html lacks %s", want)
		}
	}

	wantRoot := http.StatusServiceUnavailable
	if Complete() {
		wantRoot = http.StatusOK
	}
	h := Handler()
	for path, want := range map[string]int{
		"/":             wantRoot,
		"/app.js":       http.StatusOK,
		"/style.css":    http.StatusOK,
		"/stompbox.js":  http.StatusOK,
		"/upload.html":  http.StatusOK,
		"/upload.js":    http.StatusOK,
		"/receive.html": http.StatusOK,
		"/receive.js":   http.StatusOK,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d (Complete() = %v)", path, rec.Code, want, Complete())
		}
	}
}
