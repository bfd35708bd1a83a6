#!/usr/bin/env bash
# Regenerates gobgp.protoset: a FileDescriptorSet for GoBGP's gRPC API (apipb), so
# that ztp can decode gobgpd's requests for policy (gobgpd serves no gRPC reflection).
#
# Usage:
#   examples/gobgp/gen-protoset.sh            # rewrite examples/gobgp/gobgp.protoset
#   examples/gobgp/gen-protoset.sh --check    # regenerate to a temp file, fail if it differs
#   examples/gobgp/gen-protoset.sh -o FILE    # write FILE instead
#
# Inputs are pinned so the output is byte-for-byte reproducible:
#   - GoBGP's .proto files (gobgp.proto, attribute.proto, capability.proto) from
#     Debian bookworm's golang-github-osrg-gobgp-dev 3.10.0-1, the source of the
#     gobgpd 3.10 package; their sha256 sums are checked below.
#   - google/protobuf/*.proto and protoc from Debian's libprotobuf-dev and
#     protobuf-compiler (3.21.12).
set -euo pipefail

GOBGP_PKG=golang-github-osrg-gobgp-dev
GOBGP_PKG_VER=3.10.0-1
GOBGP_API_DIR=/usr/share/gocode/src/github.com/osrg/gobgp/api
# sha256 of each input, as shipped by $GOBGP_PKG $GOBGP_PKG_VER.
declare -A GOBGP_SUMS=(
	[gobgp.proto]=a6a174f1919a955600b20871316cd1c7b69247677dc34c31c851c9c26bc30d00
	[attribute.proto]=70432a89b36fa9b3167f687755a7ed0601eeec29d0109b221764f8b36a1f34e9
	[capability.proto]=dc103a749757903db828d64ec9b48d193ff728daca34df56a63d07832b0c32cf
)
PROTOC_WANT='libprotoc 3.21.12'
PROTOBUF_INCLUDE=/usr/include

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/gobgp.protoset"
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
		sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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
[[ -f $GOBGP_API_DIR/gobgp.proto ]] || need_pkgs+=("$GOBGP_PKG")
if ((${#need_pkgs[@]} > 0)); then
	echo "gen-protoset.sh: installing ${need_pkgs[*]}" >&2
	apt-get update >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need_pkgs[@]}" >/dev/null
fi

got_protoc=$(protoc --version)
if [[ $got_protoc != "$PROTOC_WANT" ]]; then
	# A different protoc can serialise descriptors differently; the result is
	# still valid but --check against the committed file may then fail.
	echo "gen-protoset.sh: warning: want $PROTOC_WANT, have $got_protoc" >&2
fi
if got_ver=$(dpkg-query -W -f '${Version}' "$GOBGP_PKG" 2>/dev/null) && [[ $got_ver != "$GOBGP_PKG_VER" ]]; then
	echo "gen-protoset.sh: warning: want $GOBGP_PKG $GOBGP_PKG_VER, have $got_ver (the checksums decide)" >&2
fi

# A .proto file that differs from the pinned one describes a different API: the
# protoset must then be reviewed (and the policy with it), not silently rebuilt.
for f in "${!GOBGP_SUMS[@]}"; do
	[[ -f $GOBGP_API_DIR/$f ]] || die "$GOBGP_API_DIR/$f missing (apt-get install -y $GOBGP_PKG)"
	sum=$(sha256sum "$GOBGP_API_DIR/$f" | cut -d' ' -f1)
	[[ $sum == "${GOBGP_SUMS[$f]}" ]] || die "$GOBGP_API_DIR/$f: sha256 $sum, want ${GOBGP_SUMS[$f]}"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tmp_out="$work/gobgp.protoset"
# Relative paths and a fixed file order make the descriptor names ("gobgp.proto")
# and the output bytes independent of where the inputs live.
(cd "$GOBGP_API_DIR" && protoc \
	-I . -I "$PROTOBUF_INCLUDE" \
	--include_imports \
	--descriptor_set_out="$tmp_out" \
	gobgp.proto attribute.proto capability.proto)

if ((check)); then
	cmp -s "$tmp_out" "$out" || die "$out is stale: run examples/gobgp/gen-protoset.sh"
	echo "gen-protoset.sh: $out is up to date" >&2
	exit 0
fi
cp "$tmp_out" "$out"
echo "gen-protoset.sh: wrote $out ($(wc -c <"$out") bytes, sha256 $(sha256sum "$out" | cut -d' ' -f1))" >&2
