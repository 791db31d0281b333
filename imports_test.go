// Package stompbox_test holds repository-wide tests. The module root has no
// non-test code; this package exists only to check the shape of the tree.
package stompbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// modulePath is the module's import path; imports below it are "ours".
const modulePath = "github.com/stompbox/stompbox"

// anything marks a package that may import any package of ours.
const anything = "*"

// allowedInternal is the import-direction table of ARCHITECTURE.md: for each
// package of the module (relative to modulePath, "" is the root), the packages
// of ours it may import directly. Keys ending in "/..." cover every package
// below that directory. A package missing from this table is itself a
// violation, so adding a package forces a decision about where it sits.
var allowedInternal = map[string][]string{
	"":            nil, // test-only root package; it has no non-test imports
	"frames":      nil, // the leaf: knows nothing of ours
	"broker":      {"frames"},
	"persistence": {"broker", "frames"},
	// journaltest is the conformance suite any broker.Journal must pass.
	"persistence/journaltest": {"broker", "frames"},
	"wsadapter":               {"frames", "broker"},
	"web":                     nil,
	"server":                  {"wsadapter", "broker", "persistence", "web", "frames", "server/cluster"},
	"server/auth":             {"broker"},
	// cluster implements broker.Cluster over NATS JetStream;
	// clustertest runs NATS servers for tests of any package.
	"server/cluster":             {"broker", "frames"},
	"server/cluster/clustertest": {"server/cluster"},
	"cmd/...":                    {"server", "broker", "frames", "wsadapter", "persistence", "web"},
	// The command's configuration loader builds the packages' Configs.
	"cmd/stompbox":                 {"server", "server/auth", "server/cluster", "broker", "frames", "wsadapter", "persistence", "web", "cmd/stompbox/internal/config"},
	"cmd/stompbox/internal/config": {"server", "server/cluster", "broker", "frames", "persistence", "wsadapter"},
	"e2e/...":                      {anything},
}

// forbiddenExternal lists standard-library and third-party imports a package
// must not have: frames and broker stay free of sockets, files, WebSocket and
// global metrics so they can be driven byte-for-byte in tests and by any
// transport. Patterns ending in "/..." match the path and everything below it.
var forbiddenExternal = map[string][]string{
	"frames": slices.Concat(noIO, []string{"github.com/prometheus/..."}),
	"broker": noIO,
}

// noIO is what the core must not touch: the network, the file system, the
// WebSocket library and the global metrics HTTP handler (server owns those).
var noIO = []string{
	"net", "net/http", "os", "github.com/gobwas/ws/...",
	"github.com/prometheus/client_golang/prometheus/promhttp",
}

// listedPackage is the part of `go list -json` output the rules need. Imports
// are the direct imports of the non-test files; test imports are not checked,
// since tests may reach across layers (e.g. a real client in a broker test).
type listedPackage struct {
	ImportPath string
	Imports    []string
}

// matchPattern reports whether path matches pattern, where a trailing "/..."
// matches the path itself and every path below it (as in `go list`).
func matchPattern(pattern, path string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

// ruleKey finds the allowedInternal entry governing rel ("" if none). An exact
// key wins over a "/..." key.
func ruleKey(rel string) (string, bool) {
	if _, ok := allowedInternal[rel]; ok {
		return rel, true
	}
	for key := range allowedInternal {
		if strings.HasSuffix(key, "/...") && matchPattern(key, rel) {
			return key, true
		}
	}
	return "", false
}

// relative returns path relative to modulePath and whether it is ours.
func relative(path string) (string, bool) {
	if path == modulePath {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, modulePath+"/")
	return rel, ok
}

// displayName names a module package in messages; the root reads as ".".
func displayName(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// importViolations checks pkgs against allowedInternal and forbiddenExternal
// and returns one message per violation, sorted so that output is stable.
// It is pure so the tests below can prove it fails on known-bad trees.
func importViolations(pkgs []listedPackage) []string {
	var out []string
	for _, p := range pkgs {
		rel, ours := relative(p.ImportPath)
		if !ours {
			continue // `go list ./...` lists only ours; be safe anyway
		}
		name := displayName(rel)
		key, known := ruleKey(rel)
		if !known {
			out = append(out, fmt.Sprintf("%s: package not in the import rules; add it to the import rules in imports_test.go", name))
			continue
		}
		allowed := allowedInternal[key]
		for _, imp := range p.Imports {
			if impRel, isOurs := relative(imp); isOurs {
				if !slices.Contains(allowed, anything) && !slices.Contains(allowed, impRel) {
					out = append(out, fmt.Sprintf("%s imports %s: not allowed (allowed: %s)", name, displayName(impRel), listOrNone(allowed)))
				}
				continue
			}
			for _, pattern := range forbiddenExternal[rel] {
				if matchPattern(pattern, imp) {
					out = append(out, fmt.Sprintf("%s imports %s: forbidden (matches %s)", name, imp, pattern))
					break
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func listOrNone(pkgs []string) string {
	if len(pkgs) == 0 {
		return "none"
	}
	return strings.Join(pkgs, ", ")
}

// goTool returns the go command of the toolchain running the test, so the
// listing agrees with the build; it falls back to "go" on PATH.
func goTool() string {
	// runtime.GOROOT is deprecated because a copied binary's build root may
	// not exist; a test binary runs where it was built, and Stat falls back.
	//lint:ignore SA1019 test binaries run on the machine that built them
	bin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	return "go"
}

// TestImportRules lists the real tree and checks it against the rules.
func TestImportRules(t *testing.T) {
	cmd := exec.Command(goTool(), "list", "-json", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -json ./...: %v\n%s", err, stderr.String())
	}

	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}

	// Without this a broken listing (wrong directory, empty output) would
	// make the test pass without checking anything.
	ours := 0
	for _, p := range pkgs {
		if _, ok := relative(p.ImportPath); ok {
			ours++
		}
	}
	if ours == 0 {
		t.Fatalf("go list found no packages of %s; the check would be vacuous", modulePath)
	}
	t.Logf("checked %d packages of %s", ours, modulePath)

	for _, v := range importViolations(pkgs) {
		t.Error(v)
	}
}

// TestImportViolations proves the checker catches each kind of violation and
// stays quiet on a tree that follows the rules.
func TestImportViolations(t *testing.T) {
	m := func(rel string) string { return modulePath + "/" + rel }
	tests := []struct {
		name string
		pkgs []listedPackage
		want []string
	}{
		{
			name: "clean tree",
			pkgs: []listedPackage{
				{ImportPath: modulePath},
				{ImportPath: m("frames"), Imports: []string{"bytes", "errors", "strconv"}},
				{ImportPath: m("broker"), Imports: []string{m("frames"), "sync", "github.com/prometheus/client_golang/prometheus"}},
				{ImportPath: m("persistence"), Imports: []string{m("broker"), m("frames"), "os"}},
				{ImportPath: m("wsadapter"), Imports: []string{m("frames"), m("broker"), "net", "github.com/gobwas/ws"}},
				{ImportPath: m("web"), Imports: []string{"embed"}},
				{ImportPath: m("server"), Imports: []string{m("wsadapter"), m("broker"), m("persistence"), m("web"), m("frames"), "net/http"}},
				{ImportPath: m("cmd/stompbox"), Imports: []string{m("server"), "os"}},
				{ImportPath: m("cmd/stompbench"), Imports: []string{m("frames"), m("wsadapter")}},
				{ImportPath: m("e2e/browser"), Imports: []string{m("server"), m("cmd/stompbox"), "os/exec"}},
			},
			want: nil,
		},
		{
			name: "frames imports broker",
			pkgs: []listedPackage{{ImportPath: m("frames"), Imports: []string{m("broker")}}},
			want: []string{"frames imports broker: not allowed (allowed: none)"},
		},
		{
			name: "broker imports net",
			pkgs: []listedPackage{{ImportPath: m("broker"), Imports: []string{m("frames"), "net"}}},
			want: []string{"broker imports net: forbidden (matches net)"},
		},
		{
			name: "frames imports ws subpackage and prometheus",
			pkgs: []listedPackage{{ImportPath: m("frames"), Imports: []string{"github.com/gobwas/ws/wsutil", "github.com/prometheus/client_golang/prometheus"}}},
			want: []string{
				"frames imports github.com/gobwas/ws/wsutil: forbidden (matches github.com/gobwas/ws/...)",
				"frames imports github.com/prometheus/client_golang/prometheus: forbidden (matches github.com/prometheus/...)",
			},
		},
		{
			name: "wsadapter imports persistence",
			pkgs: []listedPackage{{ImportPath: m("wsadapter"), Imports: []string{m("frames"), m("persistence")}}},
			want: []string{"wsadapter imports persistence: not allowed (allowed: frames, broker)"},
		},
		{
			name: "persistence imports wsadapter",
			pkgs: []listedPackage{{ImportPath: m("persistence"), Imports: []string{m("broker"), m("wsadapter")}}},
			want: []string{"persistence imports wsadapter: not allowed (allowed: broker, frames)"},
		},
		{
			name: "unknown package",
			pkgs: []listedPackage{{ImportPath: m("util"), Imports: []string{m("frames")}}},
			want: []string{"util: package not in the import rules; add it to the import rules in imports_test.go"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := importViolations(tt.pkgs)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("importViolations() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
