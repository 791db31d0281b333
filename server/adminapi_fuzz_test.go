package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzAdminListParams feeds arbitrary query strings to the list
// parameters and to the list and peek handlers: an answer is 200 or 400,
// never a panic, and parsed parameters are in range.
func FuzzAdminListParams(f *testing.F) {
	for _, seed := range []string{
		"", "offset=5&limit=10", "sort=name&order=desc&q=abc", "limit=999999999999999999999",
		"offset=-1", "q=%ff%fe", "sort=messages&sort=name", "limit=0", "order=", "interval=3&preview=4096",
	} {
		f.Add(seed)
	}
	srv := New(Config{})
	h := srv.AdminHandler()
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseListParams(v, destSpec.sortFields(), "name")
		if err == nil {
			if p.offset < 0 || p.limit < 1 || p.limit > maxListLimit || destSpec.by[p.sort] == nil {
				t.Fatalf("%q parsed to %+v", raw, p)
			}
		}
		for _, path := range []string{"/api/destinations", "/api/connections", "/api/durables", "/api/queues/peek"} {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.URL.RawQuery = raw
			req.RemoteAddr, req.Host = "127.0.0.1:1", "127.0.0.1:61680"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest && rec.Code != http.StatusNotFound {
				t.Fatalf("%s?%s: %d %s", path, raw, rec.Code, rec.Body)
			}
		}
	})
}
