# stompbox developer entry points. `make test` is what CI runs (via .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

# Prefer the toolchain in /usr/local/go when it is not on PATH yet.
export PATH := $(PATH):/usr/local/go/bin

GO ?= go
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
# Whole suite must stay well under the 15-minute CI budget on 2 cores.
TEST_TIMEOUT ?= 10m
FUZZTIME ?= 30s
BENCH_COUNT ?= 6
BENCH_DIR := .bench

.PHONY: test deps lint unit e2e e2e-rest e2e-deps bench fuzz build run run-cluster web

# test runs lint, unit and e2e; the one long browser test (E2E_LONG, five
# minutes of a paused page kept alive by WebSocket pings, nearly idle)
# runs in a process of its own from the start, so it costs no wall time.
test: deps e2e-deps web
	$(call alongside_long_e2e,$(MAKE) --no-print-directory lint unit e2e-rest)

# deps installs what the targets need, idempotently. Go itself must already be
# installed (Debian's packaged Go is too old for go.mod); the race detector
# needs cgo, hence a C compiler.
deps:
	@command -v $(GO) >/dev/null || { echo "deps: Go (see go.mod for the version) is not on PATH" >&2; exit 1; }
	@if ! command -v gcc >/dev/null; then \
		echo "deps: installing gcc (needed by go test -race)"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq gcc libc6-dev; \
	fi
	$(GO) mod download

lint: deps
	@unformatted=$$(git ls-files -z --cached --others --exclude-standard -- '*.go' | xargs -0 -r "$$($(GO) env GOROOT)/bin/gofmt" -l); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags e2e ./e2e/...

# unit runs every package, then the server package once more with the
# goroutine connection driver (the default is epoll on Linux).
unit: deps
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	STOMPBOX_TEST_DRIVER=goroutines $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./server/

# e2e runs the cross-process suites in ./e2e (build tag e2e, so `unit` skips
# them): a real stompbox binary as a child process, driven by other clients.
# The Python interop test needs Debian's python3-stomp (stomp.py) and Debian's
# own interpreter: a pyenv or venv python3 earlier on PATH does not see
# packages installed with apt. The browser test drives Debian's chromium
# headless and needs the stomp.js bundle built into the binary (web).
E2E_PYTHON ?= /usr/bin/python3
E2E_TIMEOUT ?= 10m

# TestBrowserBackground keeps a paused page connected for five minutes:
# it runs in a go test process of its own, next to the other work, so its
# wait overlaps the rest instead of adding to it (inside one process a
# parallel test starts only after all sequential ones).
E2E_LONG := ^TestBrowserBackground$$
E2E_RUN = STOMPBOX_E2E_PYTHON=$(E2E_PYTHON) $(GO) test -tags e2e -race -count=1 -timeout $(E2E_TIMEOUT)

# alongside_long_e2e runs the command $(1) while E2E_LONG runs in the
# background, then reports both; a failing $(1) stops the long test.
define alongside_long_e2e
	$(GO) test -tags e2e -race -count=1 -run '^$$' ./e2e/... # compile the e2e tests once
	long=$$(mktemp); \
	$(E2E_RUN) -run '$(E2E_LONG)' ./e2e/ >"$$long" 2>&1 & \
	pid=$$!; \
	rc=0; $(1) || rc=$$?; \
	if [ $$rc -ne 0 ]; then kill $$pid 2>/dev/null || true; fi; \
	longrc=0; wait $$pid || longrc=$$?; \
	echo "--- $(E2E_LONG) (run alongside):"; cat "$$long"; rm -f "$$long"; \
	[ $$rc -eq 0 ] && [ $$longrc -eq 0 ]
endef

e2e: deps e2e-deps web
	$(call alongside_long_e2e,$(MAKE) --no-print-directory e2e-rest)

# e2e-rest is the e2e suite without E2E_LONG.
e2e-rest: deps e2e-deps web
	$(E2E_RUN) -skip '$(E2E_LONG)' ./e2e/...

# e2e-deps installs, with apt-get and only what is missing: python3-stomp
# (stomp.py, for the Python interop test), chromium (the browser test runs
# /usr/bin/chromium) and prometheus (its promtool checks deploy/prometheus).
e2e-deps:
	@missing=; \
	dpkg -s python3-stomp >/dev/null 2>&1 || missing="$$missing python3-stomp"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		echo "e2e-deps: installing$$missing with apt-get"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

bench: deps
	mkdir -p $(BENCH_DIR)
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./... | tee $(BENCH_DIR)/bench.txt

fuzz: deps
	FUZZTIME=$(FUZZTIME) GO=$(GO) .ci/fuzz

# build compiles the release binary ./stompbox (gitignored) with the demo
# page embedded: static (no cgo), reproducible paths, stripped, and the
# version from git stamped into main.version. deploy/Dockerfile runs exactly
# this target, so the image holds the same binary make builds.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build: web
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o stompbox ./cmd/stompbox

# run builds the broker to ./stompbox and execs it with the embedded
# defaults: native STOMP over TCP on :61613, plus topic history for the
# demo chat's /topic/chat.* rooms. Extra flags go in RUN_FLAGS,
# e.g. make run RUN_FLAGS='-listen 127.0.0.1:61613 -log-level debug'.
RUN_FLAGS ?=

run: build
	exec ./stompbox -auth-anonymous -topic-history '/topic/chat.#=1000/24h' $(RUN_FLAGS)

# run-cluster is `make run` times three in cluster mode (docs/cluster.md):
# it builds ./stompbox and bin/nats-server (the nats-server module go.mod
# pins), then deploy/cluster/run-cluster.sh starts a 3-server NATS
# JetStream cluster and 3 stompbox nodes on it, all on 127.0.0.1, prints
# the demo chat's address on each node, and stops everything on Ctrl-C.
# Data and logs go to .run-cluster/ (gitignored). RUN_FLAGS go to every
# node.
run-cluster: build
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	exec deploy/cluster/run-cluster.sh $(RUN_FLAGS)

# web vendors the browser code of the demo pages and the admin console: `npm
# ci` in web/ installs @stomp/stompjs and uPlot exactly as
# web/package-lock.json pins them, and their bundles (with their licences)
# are copied into web/dist/vendor/, which go:embed picks up
# on the next build. Both node_modules and dist/vendor are gitignored. The
# stamp inside node_modules records that `npm ci` ran against the current
# lockfile, so a repeated `make web` does nothing; deleting node_modules or
# changing the lockfile reinstalls. A binary built without this step still
# runs; its page says how to build it.
WEB_DIR := web
WEB_STAMP := $(WEB_DIR)/node_modules/.npm-ci.stamp
WEB_VENDOR := $(WEB_DIR)/dist/vendor
STOMPJS_DIR := $(WEB_DIR)/node_modules/@stomp/stompjs
# uPlot draws the admin console's charts (web/console, served at /console/
# on the admin listener); its files are vendored next to stomp.js.
UPLOT_DIR := $(WEB_DIR)/node_modules/uplot

web: $(WEB_VENDOR)/stomp.umd.min.js $(WEB_VENDOR)/stomp.LICENSE.txt \
	$(WEB_VENDOR)/uPlot.iife.min.js $(WEB_VENDOR)/uPlot.min.css $(WEB_VENDOR)/uPlot.LICENSE.txt

$(WEB_STAMP): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "web: npm (Node.js) is not on PATH; it is needed to fetch stomp.js" >&2; exit 1; }
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	touch $@

$(WEB_VENDOR)/stomp.umd.min.js: $(WEB_STAMP)
	mkdir -p $(@D)
	cp $(STOMPJS_DIR)/bundles/stomp.umd.min.js $@

$(WEB_VENDOR)/stomp.LICENSE.txt: $(WEB_STAMP)
	mkdir -p $(@D)
	cp $(STOMPJS_DIR)/LICENSE $@

$(WEB_VENDOR)/uPlot.iife.min.js: $(WEB_STAMP)
	mkdir -p $(@D)
	cp $(UPLOT_DIR)/dist/uPlot.iife.min.js $@

$(WEB_VENDOR)/uPlot.min.css: $(WEB_STAMP)
	mkdir -p $(@D)
	cp $(UPLOT_DIR)/dist/uPlot.min.css $@

$(WEB_VENDOR)/uPlot.LICENSE.txt: $(WEB_STAMP)
	mkdir -p $(@D)
	cp $(UPLOT_DIR)/LICENSE $@
