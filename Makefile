# ztp — build, test and try the safe proxy.
GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build test test-short lint fmt vet demo bench fuzz protoset-etcd clean

all: lint test build

build:
	$(GO) build -o $(BIN)/ztp-proxy ./cmd/ztp-proxy
	@if [ -d cmd/ztpctl ]; then $(GO) build -o $(BIN)/ztpctl ./cmd/ztpctl; fi

## test: the whole suite with the race detector (the etcd end-to-end test needs
## Debian's etcd-server and etcd-client; .ci/run installs them).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## demo: build, start a backend and the proxy with example policies and minted
## certificates, and show allowed, denied and audited calls.
demo: build
	$(GO) run ./examples/demo

## bench: proxy overhead against the direct call, measured in the same run.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./proxy/ ./policy/ ./audit/ ./decode/

## fuzz: a short campaign on every parser and decoder.
FUZZTIME ?= 30s
fuzz:
	@for p in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$p 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
	  done; \
	done

protoset-etcd:
	bash examples/etcd/gen-protoset.sh

clean:
	rm -rf $(BIN)
