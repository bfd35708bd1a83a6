#!/usr/bin/env bash
# Runs a single-member etcd on loopback in the foreground, as the reference
# backend for ztp's etcd example and integration tests.
#
# Usage: examples/etcd/start-etcd.sh PORT_CLIENT PORT_PEER DATA_DIR [PORT_METRICS]
#
#   PORT_CLIENT   gRPC/HTTP client port; clients (or ztp) dial 127.0.0.1:PORT_CLIENT
#   PORT_PEER     raft peer port; unused by a single member but etcd must bind it
#   DATA_DIR      created with mode 0700 if missing; use a fresh temp dir per run
#   PORT_METRICS  optional: serves /metrics on 127.0.0.1:PORT_METRICS, whose
#                 grpc_server_started_total{grpc_method=...} shows what reached etcd
#
# The script execs etcd, so its PID is etcd's: send SIGTERM to that PID to stop
# it. etcd is ready when http://127.0.0.1:PORT_CLIENT/health answers
# {"health":"true"} (about a second). Plaintext on purpose: in the example ztp
# terminates mTLS and the backend is reachable only from loopback.
#
# Needs Debian's etcd-server (3.4.23 on bookworm); installed here if missing.
set -euo pipefail

usage() {
	sed -n '5,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

(($# == 3 || $# == 4)) || usage
client_port=$1
peer_port=$2
data_dir=$3
metrics_port=${4:-}

for p in "$client_port" "$peer_port" ${metrics_port:+"$metrics_port"}; do
	if ! [[ $p =~ ^[0-9]+$ ]] || ((p < 1 || p > 65535)); then
		echo "start-etcd.sh: invalid port: $p" >&2
		exit 2
	fi
done
[[ -n $data_dir ]] || usage

if ! command -v etcd >/dev/null 2>&1; then
	echo "start-etcd.sh: installing etcd-server" >&2
	apt-get update >/dev/null
	DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server >/dev/null
fi

# etcd warns about, and future versions refuse, a data dir readable by others.
mkdir -p -m 0700 "$data_dir"

client_url="http://127.0.0.1:$client_port"
peer_url="http://127.0.0.1:$peer_port"
args=(
	--name ztp-example
	--data-dir "$data_dir"
	--listen-client-urls "$client_url"
	--advertise-client-urls "$client_url"
	--listen-peer-urls "$peer_url"
	--initial-advertise-peer-urls "$peer_url"
	--initial-cluster "ztp-example=$peer_url"
	--initial-cluster-state new
	--initial-cluster-token "ztp-example-$client_port"
	--logger zap
	--log-outputs stderr
)
if [[ -n $metrics_port ]]; then
	args+=(--listen-metrics-urls "http://127.0.0.1:$metrics_port")
fi

# Settings from the caller's environment (ETCD_*) would silently override or
# conflict with the flags above; etcd refuses to start if a flag and its
# ETCD_ variable are both set, so drop them.
while IFS= read -r name; do
	unset "$name"
done < <(compgen -e | grep '^ETCD_' || true)

exec etcd "${args[@]}"
