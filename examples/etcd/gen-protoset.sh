#!/usr/bin/env bash
# Regenerates etcd.protoset: a FileDescriptorSet for etcd's v3 gRPC API, so that
# ztp can decode etcd requests for policy (etcd serves no gRPC reflection).
#
# Usage:
#   examples/etcd/gen-protoset.sh            # rewrite examples/etcd/etcd.protoset
#   examples/etcd/gen-protoset.sh --check    # regenerate to a temp file, fail if it differs
#   examples/etcd/gen-protoset.sh -o FILE    # write FILE instead
#
# Inputs are pinned so the output is byte-for-byte reproducible:
#   - etcd's .proto files from the Go module go.etcd.io/etcd at a pseudo-version
#     whose .proto files are identical to the v3.4.23 tag (Debian bookworm's
#     etcd-server); the proxy does not serve the v3.4.23 commit itself.
#   - gogoproto from github.com/gogo/protobuf v1.3.2 and google/api from
#     grpc-gateway v1.9.5's third_party/googleapis: the versions etcd v3.4.23's
#     go.mod names.
#   - google/protobuf/*.proto and protoc from Debian's libprotobuf-dev and
#     protobuf-compiler (3.21.12); grpc/health/v1 from Debian's grpc-proto.
#
# Modules are fetched with `go mod download` in a throw-away module, so the
# repository's go.mod and go.sum are never read or written. Each module's h1:
# checksum is compared with the one pinned here, in addition to the checks the
# go command makes against the checksum database.
set -euo pipefail

ETCD_MOD=go.etcd.io/etcd
# v3.4.13-2-gdd1b699fc on release-3.4; `git diff dd1b699fc489 v3.4.23 -- '*.proto'` is empty.
ETCD_VER=v0.5.0-alpha.5.0.20200910180754-dd1b699fc489
ETCD_SUM='h1:1JFLBqwIgdyHN1ZtgjTBwO+blA6gVOmZurpiMEsETKo='
GOGO_MOD=github.com/gogo/protobuf
GOGO_VER=v1.3.2
GOGO_SUM='h1:Ov1cvc58UF3b5XjBnZv7+opcTcQFZebYjWzi34vdm4Q='
GATEWAY_MOD=github.com/grpc-ecosystem/grpc-gateway
GATEWAY_VER=v1.9.5
GATEWAY_SUM='h1:UImYN5qQ8tuGpGE16ZmjvcTtTw24zw1QAp/SlnNrZhI='
PROTOC_WANT='libprotoc 3.21.12'
PROTOBUF_INCLUDE=/usr/include
GRPC_PROTO_DIR=/usr/share/grpc-proto

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/etcd.protoset"
check=0

while (($# > 0)); do
	case "$1" in
	--check) check=1 ;;
	-o)
		[[ $# -ge 2 ]] || { echo "gen-protoset.sh: -o needs a file" >&2; exit 2; }
		out=$2
		shift
		;;
	-h | --help)
		sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "gen-protoset.sh: unknown argument: $1" >&2
		exit 2
		;;
	esac
	shift
done

die() {
	echo "gen-protoset.sh: $*" >&2
	exit 1
}

# Install the Debian packages only when something is missing: apt is slow and
# needs root, and a developer machine usually has them already.
need_pkgs=()
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
[[ -f $PROTOBUF_INCLUDE/google/protobuf/descriptor.proto ]] || need_pkgs+=(libprotobuf-dev)
[[ -f $GRPC_PROTO_DIR/grpc/health/v1/health.proto ]] || need_pkgs+=(grpc-proto)
if ((${#need_pkgs[@]} > 0)); then
	echo "gen-protoset.sh: installing ${need_pkgs[*]}" >&2
	apt-get update >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null
fi
command -v go >/dev/null 2>&1 || die "go is not on PATH"
command -v jq >/dev/null 2>&1 || die "jq is not on PATH (apt-get install -y jq)"

got_protoc=$(protoc --version)
if [[ $got_protoc != "$PROTOC_WANT" ]]; then
	# A different protoc can serialise descriptors differently; the result is
	# still valid but --check against the committed file may then fail.
	echo "gen-protoset.sh: warning: want $PROTOC_WANT, have $got_protoc" >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Throw-away module: `go mod download` needs a main module to record sums in,
# and it must not be the repository's.
mkdir "$work/mod"
(cd "$work/mod" && GOFLAGS=-mod=mod go mod init ztp.invalid/protoset >/dev/null 2>&1)

# fetch MODULE VERSION SUM -> prints the module's directory in the module cache.
fetch() {
	local json dir sum err
	json=$(cd "$work/mod" && GOFLAGS=-mod=mod GOWORK=off go mod download -json "$1@$2") ||
		die "go mod download $1@$2 failed: $(jq -r '.Error // empty' <<<"$json" 2>/dev/null)"
	err=$(jq -r '.Error // empty' <<<"$json")
	[[ -z $err ]] || die "go mod download $1@$2: $err"
	sum=$(jq -r '.Sum' <<<"$json")
	[[ $sum == "$3" ]] || die "$1@$2: checksum $sum, want $3"
	dir=$(jq -r '.Dir' <<<"$json")
	[[ -d $dir ]] || die "$1@$2: module directory $dir missing"
	printf '%s\n' "$dir"
}

etcd_dir=$(fetch "$ETCD_MOD" "$ETCD_VER" "$ETCD_SUM")
gogo_dir=$(fetch "$GOGO_MOD" "$GOGO_VER" "$GOGO_SUM")
gateway_dir=$(fetch "$GATEWAY_MOD" "$GATEWAY_VER" "$GATEWAY_SUM")

# Lay out exactly the files needed under the import paths the .proto files
# use ("etcd/...", "gogoproto/...", "google/api/..."). Copying single files,
# rather than adding whole trees to the include path, keeps gogo's bundled
# google/protobuf copies from shadowing Debian's.
inc="$work/include"
put() { # put SRC DEST-relative-to-include
	mkdir -p "$(dirname "$inc/$2")"
	cp "$1" "$inc/$2"
}
put "$etcd_dir/etcdserver/etcdserverpb/rpc.proto" etcd/etcdserver/etcdserverpb/rpc.proto
put "$etcd_dir/mvcc/mvccpb/kv.proto" etcd/mvcc/mvccpb/kv.proto
put "$etcd_dir/auth/authpb/auth.proto" etcd/auth/authpb/auth.proto
put "$etcd_dir/etcdserver/api/v3lock/v3lockpb/v3lock.proto" etcd/etcdserver/api/v3lock/v3lockpb/v3lock.proto
put "$etcd_dir/etcdserver/api/v3election/v3electionpb/v3election.proto" etcd/etcdserver/api/v3election/v3electionpb/v3election.proto
put "$gogo_dir/gogoproto/gogo.proto" gogoproto/gogo.proto
put "$gateway_dir/third_party/googleapis/google/api/annotations.proto" google/api/annotations.proto
put "$gateway_dir/third_party/googleapis/google/api/http.proto" google/api/http.proto
put "$GRPC_PROTO_DIR/grpc/health/v1/health.proto" grpc/health/v1/health.proto

tmp_out="$work/etcd.protoset"
# Relative paths and a fixed file order make the descriptor names ("etcd/...")
# and the output bytes independent of where the inputs live.
(cd "$inc" && protoc \
	-I . -I "$PROTOBUF_INCLUDE" \
	--include_imports \
	--descriptor_set_out="$tmp_out" \
	etcd/etcdserver/etcdserverpb/rpc.proto \
	etcd/etcdserver/api/v3lock/v3lockpb/v3lock.proto \
	etcd/etcdserver/api/v3election/v3electionpb/v3election.proto \
	grpc/health/v1/health.proto)

if ((check)); then
	cmp -s "$tmp_out" "$out" || die "$out is stale: run examples/etcd/gen-protoset.sh"
	echo "gen-protoset.sh: $out is up to date" >&2
	exit 0
fi
cp "$tmp_out" "$out"
echo "gen-protoset.sh: wrote $out ($(wc -c <"$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))" >&2
