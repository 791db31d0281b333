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

.PHONY: test deps lint unit e2e bench fuzz run

test: lint unit e2e

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
	$(STATICCHECK) ./...

unit: deps
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# e2e is the hook for cross-process suites (browser, stomp.py, crash/restart);
# later issues fill it in.
e2e:
	@echo "e2e: no end-to-end suites yet"

bench: deps
	mkdir -p $(BENCH_DIR)
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) ./... | tee $(BENCH_DIR)/bench.txt

fuzz: deps
	FUZZTIME=$(FUZZTIME) GO=$(GO) .ci/fuzz

run:
	@echo "make run: the stompbox broker does not exist yet; it arrives with the broker-core issue." >&2
	@exit 1
