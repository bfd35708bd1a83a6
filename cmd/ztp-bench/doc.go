// Command ztp-bench is a developer tool, not part of a deployment: it measures
// what ztp-proxy costs a caller, against calling the same backend directly, in
// one reproducible run (`make bench`).
//
// It starts one backend (grpc's interop TestService, as in the proxy's tests)
// and, in front of it, the proxies under test, each in its own process so that
// the load generator, the proxies and the backend share the machine's cores as
// they would in production:
//
//   - direct: the load generator calls the backend itself (plaintext);
//   - bare: proxy.NewBareForwarder, the proxy's transparent forwarder with
//     nothing around it (no TLS, policy, rate limit or audit): the floor of the
//     design;
//   - bare-mtls: the same forwarder behind the proxy's mTLS, to show what TLS
//     alone costs, since the full proxy has no plaintext listener;
//   - full: the real ztp-proxy binary with mTLS, decoding from a protoset, the
//     OPA policy in testdata/policies, a rate limit that never triggers, break-
//     glass enabled and a durable audit log.
//
// A fixed number of workers per concurrency level makes unary calls with a
// small payload, back to back, for a warm-up (not measured) and then a
// measured window. For each round and each concurrency, every path runs in
// turn, so that slow drift of the machine hits all of them alike; each row
// reports the medians over the rounds, with the proxies' throughput as a
// ratio to the direct path of the same round. It also measures the floor a
// durable audit cannot go below on the audit directory's filesystem: one 4 KiB
// write plus fdatasync, one bbolt commit, and one audit.Append by a lone
// caller.
//
// The table goes to standard output (Markdown, ready for the README), progress
// to standard error, and with -json FILE all figures, per round too, to FILE.
//
//	ztp-bench -proxy-bin bin/ztp-proxy -json bench-results.json
//	ztp-bench -proxy-bin bin/ztp-proxy -c 1,64 -rounds 2 -duration 3s
package main
