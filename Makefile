# ztp — build, test and try the safe proxy.
GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build test test-short lint fmt vet demo bench bench-micro fuzz protoset-etcd clean

all: lint test build

## build: the binaries, stamped with VERSION (default: git describe) and REVISION
## (the commit); a plain go build falls back to the toolchain's build info.
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/ztp-dev/ztp/internal/version.version=$(VERSION) -X github.com/ztp-dev/ztp/internal/version.revision=$(REVISION)
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ztp-proxy ./cmd/ztp-proxy
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ztpctl ./cmd/ztpctl

## test: the whole suite with the race detector (the etcd end-to-end test needs
## Debian's etcd-server and etcd-client; .ci/run installs them).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

## lint: vet, gofmt and staticcheck (pinned; go run fetches it from the Go
## module proxy once, then runs it from the module cache).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## demo: build, start a backend and the proxy with example policies and minted
## certificates, and show allowed, denied and audited calls.
demo: build
	$(GO) run ./examples/demo

## bench: what the proxy costs a caller, in one run (cmd/ztp-bench): the backend
## called directly, the bare forwarder (plaintext and mTLS) and the full ztp-proxy
## binary, at concurrency 1, 16 and 64, paths interleaved in 3 rounds (about 4½
## minutes on 2 cores). Prints a Markdown table; every figure, per round too, goes
## to $(BENCH_JSON). More flags in BENCH_FLAGS, e.g. BENCH_FLAGS='-rounds 2 -c 1,64'
## (bin/ztp-bench -h lists them).
BENCH_JSON  ?= $(BIN)/bench-results.json
BENCH_FLAGS ?=
bench: build
	$(GO) build -o $(BIN)/ztp-bench ./cmd/ztp-bench
	$(BIN)/ztp-bench -proxy-bin $(BIN)/ztp-proxy -json $(BENCH_JSON) $(BENCH_FLAGS)

## bench-micro: the per-stage go test benchmarks (policy, audit, decode, proxy).
bench-micro:
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

## proto: regenerate committed code from .proto files (pinned generator versions).
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
GENBIN             := $(CURDIR)/.gen/bin
.PHONY: proto
proto:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler libprotobuf-dev"; exit 1; }
	GOBIN=$(GENBIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(GENBIN) $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(GENBIN):$$PATH protoc -I api -I /usr/include --go_out=. --go_opt=module=github.com/ztp-dev/ztp \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/ztp-dev/ztp api/ztp/v1/ztp.proto
	PATH=$(GENBIN):$$PATH protoc -I examples/fleet/fleetpb --go_out=. --go_opt=module=github.com/ztp-dev/ztp \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/ztp-dev/ztp examples/fleet/fleetpb/fleet.proto
	protoc -I examples/fleet/fleetpb --include_imports --descriptor_set_out=examples/fleet/fleet.protoset examples/fleet/fleetpb/fleet.proto
