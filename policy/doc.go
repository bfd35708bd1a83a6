// Package policy loads the Rego policies that decide every message ztp forwards, and turns an
// evaluation into the proxy's verdict.
//
// Policies live in package ztp and are written in OPA v1 Rego. Load reads them once, together
// with any data files beside them, compiles them with network and runtime built-ins removed
// (see Capabilities), and prepares a single query. Engine.Eval then runs that compiled query
// with OPA's topdown evaluator once per client message; nothing is parsed or compiled on the
// request path.
//
// The contract with policy authors (README, "The policy contract"):
//
//   - data.ztp.allow: boolean, must be true for the message to pass. Missing, undefined or
//     false means not allowed.
//   - data.ztp.deny: set of strings; any member denies. An active break-glass grant overrides it.
//   - data.ztp.forbid: set of strings; any member denies. Nothing overrides it.
//   - data.ztp.budgets: set of {"key": string, "cost": number}, the change budgets the message
//     draws on.
//
// Policies may ask the upstream what a message would touch with the built-in ztp.query
// (QueryBuiltin), declared in Capabilities so it compiles wherever policies do. Its
// implementation reads the decision's Queries from the evaluation's context (WithQueries):
// the querier the proxy built for the message's upstream, the per-decision limits and
// cache, and the log of what was asked, which goes into the audit record. Without one (no
// effect_queries for the upstream, ztpctl policy eval, unmocked tests) it fails, and every
// failure halts the evaluation: an effect query can deny, never allow by being undefined.
// Replay answers queries from the audit record (SkipQueryNotRecorded otherwise).
//
// Only the rules a policy actually defines are queried, so a policy without deny, forbid or
// budgets rules still evaluates: an absent set is empty. A value of the wrong shape (allow that
// is not a boolean, deny that is not a set of strings, ...) is an evaluation error, and so is a
// failing built-in: the engine runs with strict built-in errors, so `to_number("x")` inside a
// forbid rule can never quietly make that rule undefined and let a message through.
//
// Decide combines a Result (or an evaluation error) with the policy mode and an active
// break-glass grant into a Verdict. Every path that is not an explicit allow ends in a denial:
// errors, undefined results, unknown modes and malformed values all fail closed.
//
// An Engine is immutable and safe for concurrent use. Reloading is building a new Engine with
// Load and swapping it in; a failed Load leaves the caller's current Engine untouched.
// LoadTested does the same and also runs the policy's own test_ rules against the same read
// of the files: the proxy activates a policy only when they pass.
//
// The package also carries the policy author's tools, so that they judge a policy exactly as
// the proxy would run it:
//
//   - RunTests runs *_test.rego files with OPA's tester, the proxy's capabilities and raised
//     built-in errors, with line coverage of the policy files (ztpctl policy test).
//   - Explain says which step of Decide produced a verdict (ztpctl policy eval).
//   - RecordInput rebuilds the policy input from an audit record, and a Replayer re-decides
//     recorded traffic under a candidate policy and counts what changes (ztpctl policy
//     replay).
//   - Library is a Rego helper library, package ztp.lib, that Load compiles in whenever a
//     policy refers to data.ztp.lib (method classification, etcd key ranges, principal
//     helpers). Its tests live beside it in lib/ztp and run with this package's tests.
package policy
