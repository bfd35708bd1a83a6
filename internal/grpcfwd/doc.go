// Package grpcfwd holds the wire-level pieces every ztp gRPC forwarder shares:
// a codec that passes message bytes through untouched, the stream description
// that opens any of the four RPC kinds upstream, and the two pumps that copy
// messages, headers, half-close, trailers and status between a server stream
// and a client stream.
//
// It guarantees that a forwarded call looks to both ends as if they talked to
// each other: message bytes are never re-encoded, the client's half-close
// reaches the upstream as a half-close, and the upstream's header, trailer and
// final status reach the client unchanged. What to forward where, and which
// metadata to drop or add, stays with the caller (ztp-proxy's pipeline,
// ztpctl tunnel).
package grpcfwd
