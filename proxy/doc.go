// Package proxy is the ztp-proxy gateway: a gRPC server that accepts any
// service, runs every client message through the safety pipeline and forwards
// the original bytes to the upstream that serves the method.
//
// It is split the way the data flows:
//
//   - codec.go: a pass-through codec, so frames are never re-encoded;
//   - forward.go: the transparent forwarder (grpc.UnknownServiceHandler). It
//     only routes and copies frames, headers and trailers in both directions and
//     knows nothing of policy;
//   - pipeline.go: the stages around the forwarder, readable top-down:
//     authenticate, route, decode, decide, audit, and the outcome record. It
//     hooks RecvMsg of the server stream, so a message is handed to the
//     forwarder only after its decision is durably audited;
//   - expiry.go: every call, forwarded or control API, lives only as long as
//     the credential that opened it: a timer at the principal's expiry (the
//     rule of identity.Expired) and a reload that no longer accepts the
//     principal end it with UNAUTHENTICATED, cancelling the upstream call;
//   - streams.go: the bounds on calls that have not sent a request message yet
//     (limits.first_message_timeout, limits.max_streams_per_principal) and the
//     trace such calls leave; controllimits.go: rate limits on the control API;
//   - server.go: assembles the parts from a config.Config and runs the listener;
//   - metadata.go, auditvolume.go, refusals.go, diskspace.go: what the audit
//     log may be made to hold. Only audit.headers are read (bounded) for the
//     policy and the record; every decision record carries the message's size
//     and SHA-256; refused callers, unauthenticated (per host) or not (per
//     principal), get records of their own only within a per-window budget and
//     are summarised past it; a free-space watermark degrades readiness before
//     the audit disk is full.
//   - query.go: the effect querier of an upstream with effect_queries, which
//     answers the policy's ztp.query while a message is decided.
//
// Nothing a client sent reaches an upstream before the pipeline passed it: the
// forwarder opens the upstream stream only after it received (and the
// pipeline admitted) the first message. While deciding, the policy may send
// the upstream read-only requests of its own (ztp.query): only the methods the
// upstream's effect_queries lists, encoded by the proxy from the policy's
// object, on the proxy's connection, each recorded with the decision.
//
// A message the policy could misread is never admitted on its reading: one in
// which a non-repeated field occurs twice (runtimes disagree on its meaning) is
// refused with INVALID_ARGUMENT before the policy runs, unless its upstream
// sets allow_duplicate_fields, and one over the decode limits reaches the
// policy undecoded, with request_undecoded_reason saying why.
package proxy
