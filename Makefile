# tunnel: a WireGuard point-to-point tunnel appliance.
# `make demo` runs the whole path on this machine; `make test` runs every test.

GO        ?= go
BIN       ?= bin
PKGS      ?= ./...
TESTFLAGS ?=
GOFLAGS_BUILD := -trimpath
# --version and *_build_info report these (internal/buildinfo).
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X github.com/tunnel-dev/tunnel/internal/buildinfo.version=$(VERSION) -X github.com/tunnel-dev/tunnel/internal/buildinfo.revision=$(REVISION)

.PHONY: all build test test-short lint tidy fmt vet staticcheck demo bench image proto clean help

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

CMDS = $(wildcard tunnel/cmd/tunnel tunnel/cmd/tunnel-gateway relay/cmd/relay bunny/cmd/bunny)

build: ## build bin/tunnel, bin/tunnel-gateway (what a gateway pod runs), bin/relay and bin/bunny
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./,$(CMDS))

lint: tidy fmt vet staticcheck ## go.mod tidy, gofmt, go vet and staticcheck

tidy:
	$(GO) mod tidy -diff

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) tool staticcheck $(PKGS)

test: lint ## lint, then every test with the race detector (root-only tests skip without root)
	$(GO) test -race -timeout 45m $(TESTFLAGS) $(PKGS)

test-short: ## the quick tests, no race detector
	$(GO) test -short $(TESTFLAGS) $(PKGS)

demo: build ## run the whole path on loopback and print a summary
	$(BIN)/tunnel demo

bench: build ## tunnel bench (each lever, beside raw loopback and stock tun/netstack), then the Go benchmarks
	$(BIN)/tunnel bench --levers --svg docs/bench.svg
	$(BIN)/tunnel bench --netns --peer debian --svg docs/bench-netns.svg
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./tunnel/...

image: ## build the container image (tunnel, relay, bunny on an empty base) as bin/tunnel-image.tar, no Docker needed
	$(GO) run ./manifests/image/build -o $(BIN)/tunnel-image.tar -version '$(VERSION)' -revision '$(REVISION)'

proto: ## regenerate relay/proto from relay/proto/relay.proto (needs protoc + protoc-gen-go)
	cd relay/proto && protoc --go_out=. --go_opt=paths=source_relative relay.proto

clean:
	rm -rf $(BIN)
