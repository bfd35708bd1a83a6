# ztp — build, test and try the safe proxy.
GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build test test-short lint fmt vet demo bench fuzz protoset-etcd clean

all: lint test build

build:
	$(GO) build -o $(BIN)/ztp-proxy ./cmd/ztp-proxy
	$(GO) build -o $(BIN)/ztpctl ./cmd/ztpctl

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
