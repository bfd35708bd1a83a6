// Package ratelimit bounds the rate of change that reaches production: per-principal
// token buckets (config rate_limits) and change budgets that policies draw on
// (config budgets, data.ztp.budgets).
//
// Even valid automation must not restart a whole fleet in a minute. A rate rule
// caps how fast one principal may send messages of a method class; a change budget
// caps how much of something may change, whoever asks (for example "at most 5
// member removals per hour per cluster").
//
// # Rate limits
//
// Rules are tried in config order and the first whose match block fits the call
// wins: principal (path.Match glob over the principal id), kind, group, method
// (path.Match glob over the full method, "/etcdserverpb.KV/*"); an empty field
// matches anything. A call no rule matches is not limited. Each (principal, rule)
// pair has its own bucket of burst tokens refilling at rps per second: limits are
// per principal, never per connection or address, so opening more connections
// gains nothing. A principal holding a break-glass grant is limited like anyone
// else unless its rule says breakglass_bypass. A method named by
// Options.Separate draws on a bucket of its own per principal under its rule,
// so the principal's other calls cannot exhaust it (the proxy's control calls
// that must never be starved: revoking a grant, health checks).
//
// # Response volume
//
// A rate rule whose unit is response_bytes or response_messages bounds what a
// principal receives rather than how often it asks: one request can read a
// whole keyspace. Such rules are matched apart from the message rules (the
// first matching one of each kind applies). The proxy takes a Meter for a call
// at its first response and charges every response message before sending
// it: its size, or 1. A message is granted while the bucket is not empty and
// charged in full, possibly below zero (rate.Limiter.ReserveN, which does not
// allocate here); the debt is repaid by the refill before the bucket grants
// anything again, to responses or, through Allow, to the principal's next
// requests under the rule. Over any period t a principal thus receives at
// most burst + rps × t units plus one message, and no single message above
// burst is ever granted (refused with NotRetryable: allowing it once would
// make the bound as large as the largest message).
//
// # Change budgets
//
// A budgets entry covers every key starting with its prefix (the longest
// matching prefix wins); each key has its own bucket of limit cost units
// refilling over per; costs may be fractional, to 0.001 (see Buckets). Take is
// all or nothing: it checks every bucket the message draws on (summing the
// costs of repeated keys) before it takes from any, so a refused message
// spends nothing. A key no prefix covers is refused, not waved through: a
// policy that names a budget is asking for a limit, and a missing budgets entry
// must not make the change free.
//
// # Memory
//
// A bucket is tracked only while it holds a debt, plus IdleTimeout: a full
// bucket is indistinguishable from one never created, so forgetting it changes
// nothing. At most MaxBuckets buckets are tracked per table (rate limits,
// budgets); each costs about 310 bytes with its map slot and key, so the default
// cap of 100,000 bounds a table near 30 MiB however many principals or keys
// appear (TestFloodMemory: one million principals), and near 40 MiB under
// sustained churn, the high-water size of the map, which Go never shrinks.
// A bucket below its burst is never forgotten, since that would hand its
// owner a fresh burst: whoever could force evictions (with many identities, or
// requests naming many budget keys) could escape a limit. When the table is full
// and holds no full bucket, a new name draws on its rule's single shared bucket
// instead of getting one of its own: the names beyond the cap are limited together,
// never less strictly than alone, and the tracked ones are untouched. A bucket
// created while the shared bucket is depleted starts at the shared bucket's level
// (in whole tokens, rounded down), so a name cannot draw on the shared bucket
// and then on a fresh bucket of its own.
//
// Eviction needs no goroutine: every Allow and Take inspects one bucket at the
// least recently used end and forgets it when it has been full and unused for
// IdleTimeout; an insertion into a full table inspects up to eight.
//
// # Time
//
// Every method takes the time from the caller; the package never reads a clock,
// so tests drive refills with a fake clock. A clock that goes backwards refills
// nothing.
//
// # Buckets
//
// Every bucket is a golang.org/x/time/rate.Limiter, driven only with the
// caller's time (AllowN, TokensAt, SetLimitAt, SetBurstAt; never a method that
// reads the clock or blocks). rate.Limiter counts whole tokens, so a budget
// bucket counts milli-units: its limit is multiplied by 1000 and a cost is
// charged as cost × 1000 rounded up. Costs are exact to 0.001; a finer cost is
// charged as the next 0.001, never less, and a limit is rounded down to 0.001.
// A rate-limit bucket counts one token per message. A Limiter carries a mutex
// of its own, which is never contended (its table's mutex is held); it is a
// field of the bucket, so a new bucket is one allocation of 160 bytes.
package ratelimit
