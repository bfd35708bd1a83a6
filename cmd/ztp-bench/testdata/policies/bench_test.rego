package ztp_test

import data.ztp

deployer := {"id": "spiffe://example.org/ns/prod/sa/deployer", "kind": "automation", "groups": ["deployers"], "authn": "mtls"}

alice := {"id": "spiffe://example.org/user/alice", "kind": "human", "groups": ["sre"], "authn": "mtls"}

# What the benchmark sends: a SimpleRequest with a small payload, as the proxy renders it
# (every field without presence there, at its zero value when the client left it out).
simple_request := {
	"responseType": "COMPRESSABLE", "responseSize": 0, "fillUsername": false, "fillOauthScope": false,
	"fillServerId": false, "fillGrpclbRouteType": false,
}

bench_call := {"principal": deployer, "rpc": "UnaryCall", "request": object.union(simple_request, {"payload": {"type": "COMPRESSABLE", "body": "YmVuY2htYXJr"}}), "request_decoded": true}

test_benchmark_call_is_allowed if {
	ztp.allow with input as bench_call
	count(ztp.deny) == 0 with input as bench_call
	count(ztp.forbid) == 0 with input as bench_call
}

test_human_change_needs_breakglass if {
	"UnaryCall by a human needs break-glass" in ztp.deny with input as object.union(bench_call, {"principal": alice})
}

test_human_reads if {
	ztp.allow with input as {"principal": alice, "rpc": "EmptyCall", "request": {}, "request_decoded": true}
}

undecoded := object.union(bench_call, {"request": null, "request_decoded": false})

test_undecoded_change_denied if {
	"request could not be decoded" in ztp.deny with input as undecoded
	count(ztp.forbid) == 0 with input as undecoded
}

test_large_response_denied if {
	"responses larger than 1 MiB are not served through ztp" in ztp.deny with input as object.union(bench_call, {"request": object.union(simple_request, {"responseSize": 2097152})})
}

test_forbidden_payload if {
	"payload 'forbidden' is never allowed" in ztp.forbid with input as object.union(bench_call, {"request": object.union(simple_request, {"payload": {"type": "COMPRESSABLE", "body": "Zm9yYmlkZGVu"}})})
}

test_empty_request_not_forbidden if {
	count(ztp.forbid) == 0 with input as object.union(bench_call, {"request": simple_request})
}
