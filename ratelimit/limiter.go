package ratelimit

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
)

// Defaults for Options.
const (
	DefaultMaxBuckets  = 100_000
	DefaultIdleTimeout = time.Minute
)

// NotRetryable is the retryAfter Take returns when waiting cannot help: the key has
// no configured budget, or its cost exceeds the budget's whole limit. It is
// negative, which gRPC's retry pushback (grpc-retry-pushback-ms) reads as "do not
// retry", and a whole millisecond so that a caller rounding it to milliseconds
// keeps the sign.
const NotRetryable = -time.Millisecond

// SharedKey is the Bucket.Key of a rule's shared bucket, which the callers or
// budget keys beyond MaxBuckets draw on together.
const SharedKey = "*"

// Options tune a Limiter. The zero value gives the defaults.
type Options struct {
	// MaxBuckets caps the buckets tracked for rate limits, and separately for
	// budgets (default DefaultMaxBuckets). Beyond it, new names share their
	// rule's bucket; see the package documentation.
	MaxBuckets int
	// IdleTimeout is how long a full bucket stays unused before it is forgotten
	// (default DefaultIdleTimeout). Forgetting a full bucket changes nothing but
	// memory: it would be re-created full.
	IdleTimeout time.Duration
	// Separate names the methods that draw on buckets of their own: a call
	// of such a method takes from a bucket of its principal and method under
	// the rule it matches, with that rule's rps and burst, so the principal's
	// other calls under the rule can never exhaust it, and it cannot exhaust
	// theirs. The proxy uses it for the control calls that must never be
	// starved (revoking a grant, health checks). Nil: none.
	Separate func(method string) bool
}

// Limiter enforces the rate_limits rules per principal and the change budgets
// per key. It is safe for concurrent use. Every method takes the time from its
// caller; the Limiter never reads a clock.
type Limiter struct {
	rules atomic.Pointer[rules]

	// rateMu guards rate; budgetMu guards budgets and every class's parameters
	// are only changed with both held (Update).
	rateMu   sync.Mutex
	rate     *table
	separate func(method string) bool
	budgetMu sync.Mutex
	budgets  *table
}

// New compiles rules and budgets (already validated by the config package; New
// checks them again and wraps ErrInvalidRule) into a Limiter whose buckets start
// full at now.
func New(rateRules []config.RateLimitRule, budgets []config.Budget, now time.Time, o Options) (*Limiter, error) {
	if o.MaxBuckets <= 0 {
		o.MaxBuckets = DefaultMaxBuckets
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	rs, set, err := compile(rateRules, budgets, nil, now)
	if err != nil {
		return nil, err
	}
	for c, p := range set {
		c.rule = p.rule
	}
	l := &Limiter{rate: newTable(o.MaxBuckets, o.IdleTimeout), budgets: newTable(o.MaxBuckets, o.IdleTimeout), separate: o.Separate}
	l.rules.Store(rs)
	return l, nil
}

// Allow takes one token from the bucket of p under the first rate_limits rule
// of unit messages matching p and method. With no matching rule the call is
// not limited. It first refuses, taking nothing, while p's bucket under the
// first matching response-volume rule is empty (see Meter). A
// principal holding a break-glass grant (breakglass) skips the rule only when
// the rule says breakglass_bypass. When the bucket is empty, Allow takes nothing
// and returns the time until a token is due and the bucket's name, such as
// "rate_limits[1] for spiffe://example.org/user/alice".
func (l *Limiter) Allow(p identity.Principal, method string, breakglass bool, now time.Time) (ok bool, retryAfter time.Duration, bucket string) {
	l.rateMu.Lock()
	defer l.rateMu.Unlock()
	// Loaded under the lock: Update swaps rules with the lock held, so the rule
	// and the buckets seen here belong to the same generation.
	rs := l.rules.Load()
	if ok, retryAfter, bucket = l.volumeLeft(rs, p, method, breakglass, now); !ok {
		return false, retryAfter, bucket
	}
	r := rs.match(p, method)
	if r == nil || (breakglass && r.bypass) {
		return true, 0, ""
	}
	k := bucketKey{c: r.c, name: p.ID}
	if l.separate != nil && l.separate(method) {
		k.method = method
	}
	e, shared := l.rate.get(k, now)
	ok = e.take(1, now)
	l.rate.sweep(now)
	if ok {
		return true, 0, ""
	}
	if shared {
		return false, e.wait(1, now), r.c.rule + " (shared by principals beyond " + strconv.Itoa(l.rate.max) + " tracked buckets)"
	}
	return false, e.wait(1, now), r.c.rule + " for " + keyName(k)
}

// keyName names a rate bucket in reasons and Status: the principal id, and
// the method of a separate bucket in parentheses.
func keyName(k bucketKey) string {
	if k.method == "" {
		return k.name
	}
	return k.name + " (" + k.method + ")"
}

// need is the cost one Take draws from one bucket.
type need struct {
	e    *entry
	cost float64 // in the bucket's whole tokens (milli-units)
	key  string  // the first budget key drawing on e
}

// Take draws every change budget the policy named, all or nothing: it checks
// that each bucket holds the summed cost of the keys drawing on it, and only then
// takes from all of them. A key that no budgets prefix covers, or whose cost
// exceeds its budget's whole limit, is refused (fail closed: a policy naming a
// budget nobody configured must not make the change free) with NotRetryable.
// Otherwise a refusal returns the longest wait among the buckets short of tokens
// and that bucket's key.
func (l *Limiter) Take(budgets []policy.Budget, now time.Time) (ok bool, retryAfter time.Duration, key string) {
	if len(budgets) == 0 {
		return true, 0, ""
	}
	l.budgetMu.Lock()
	defer l.budgetMu.Unlock()
	rs := l.rules.Load()
	t := l.budgets
	t.pin++

	var buf [8]need
	needs := buf[:0]
	for _, b := range budgets {
		r := rs.budget(b.Key)
		if r == nil {
			return false, NotRetryable, b.Key + " (no budgets prefix covers it)"
		}
		if !(b.Cost >= 0) || math.IsInf(b.Cost, 0) {
			return false, NotRetryable, b.Key + " (cost " + strconv.FormatFloat(b.Cost, 'g', -1, 64) + " is not a finite number >= 0)"
		}
		cost := r.c.tokens(b.Cost)
		if cost > float64(r.c.burstN) {
			return false, NotRetryable, tooCostly(b.Key, b.Cost, r.c.burst)
		}
		e, _ := t.get(bucketKey{c: r.c, name: b.Key}, now)
		e.pin = t.pin
		needs = addNeed(needs, e, cost, b.Key)
	}
	worst := -1
	var wait time.Duration
	for i, n := range needs {
		c := n.e.key.c
		if n.cost > float64(c.burstN) && n.e.key.name != "" {
			return false, NotRetryable, tooCostly(n.key, n.cost/c.scale, c.burst)
		}
		if !n.e.can(n.cost, now) {
			w := n.e.wait(n.cost, now)
			if n.cost > float64(c.burstN) {
				// Several keys sharing an overflow bucket asked for more than it
				// holds: come back after a period, when the table may have room.
				w = time.Duration(c.burst / c.rate * float64(time.Second))
			}
			if worst < 0 || w > wait {
				worst, wait = i, w
			}
		}
	}
	t.sweep(now)
	if worst >= 0 {
		return false, wait, needs[worst].key
	}
	// Every bucket can give its cost (checked above, at the same instant, with
	// a margin below rate.Limiter's own), so every AllowN succeeds.
	for _, n := range needs {
		n.e.take(int(n.cost), now)
	}
	return true, 0, ""
}

func tooCostly(key string, cost, limit float64) string {
	g := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return key + " (cost " + g(cost) + " exceeds the budget's limit " + g(limit) + ")"
}

// addNeed adds cost to e's need, so that duplicate keys, and keys that share an
// overflow bucket, are checked against their sum.
func addNeed(needs []need, e *entry, cost float64, k string) []need {
	for i := range needs {
		if needs[i].e == e {
			needs[i].cost += cost
			return needs
		}
	}
	return append(needs, need{e: e, cost: cost, key: k})
}

// Update replaces the rules and budgets in one step, keeping what callers have
// spent. A rate rule is the same rule across an update when its match block
// (principal, kind, group, method) is unchanged, wherever it moved in the list;
// a budget is the same when its prefix is. The buckets of a kept rule keep their
// tokens (capped at a smaller new burst) and refill at the new rate from now on;
// the buckets of removed rules are dropped; new rules start full. Resetting
// buckets on every reload would hand every caller a fresh burst. On error nothing
// changes.
func (l *Limiter) Update(rateRules []config.RateLimitRule, budgets []config.Budget, now time.Time) error {
	l.rateMu.Lock()
	defer l.rateMu.Unlock()
	l.budgetMu.Lock()
	defer l.budgetMu.Unlock()
	rs, set, err := compile(rateRules, budgets, l.rules.Load(), now)
	if err != nil {
		return err
	}
	changed := func(c *class) bool {
		p, ok := set[c]
		return ok && (p.rate != c.rate || p.burst != c.burst)
	}
	for _, t := range []*table{l.rate, l.budgets} {
		t.drop(func(c *class) bool { _, keep := set[c]; return !keep })
		for _, e := range t.m {
			if changed(e.key.c) {
				e.reconfigure(set[e.key.c], now)
			}
		}
	}
	old := l.rules.Load()
	for _, r := range append(slices.Clip(old.rate), old.volume...) {
		if _, keep := set[r.c]; !keep {
			r.c.removed = true
		}
	}
	for c, p := range set {
		if changed(c) {
			c.shared.reconfigure(p, now)
		}
		c.apply(p)
	}
	l.rules.Store(rs)
	return nil
}

// Bucket is the state of one bucket at a point in time.
type Bucket struct {
	Kind      string  // "rate" or "budget"
	Key       string  // the principal id, the budget key, or SharedKey
	Rule      string  // "rate_limits[1]", "budgets[0]"
	Tokens    float64 // available now
	Burst     float64 // the bucket's size
	PerSecond float64 // refill rate
}

// Status lists the tracked buckets at now, sorted by kind, rule and key. With a
// principal it lists only that principal's rate buckets. Shared buckets appear
// when they are not full. A name with no tracked bucket has full buckets.
func (l *Limiter) Status(principal string, now time.Time) []Bucket {
	var out []Bucket
	add := func(kind string, e *entry, name string) {
		c := e.key.c
		out = append(out, Bucket{Kind: kind, Key: name, Rule: c.rule, Tokens: e.units(now), Burst: c.burst, PerSecond: c.rate})
	}
	l.rateMu.Lock()
	for k, e := range l.rate.m {
		if principal == "" || k.name == principal {
			add("rate", e, keyName(k))
		}
	}
	for _, r := range l.rules.Load().rate {
		if principal == "" && !r.c.shared.full(now) {
			add("rate", &r.c.shared, SharedKey)
		}
	}
	l.rateMu.Unlock()
	if principal == "" {
		l.budgetMu.Lock()
		for k, e := range l.budgets.m {
			add("budget", e, k.name)
		}
		for _, b := range l.rules.Load().budgets {
			if !b.c.shared.full(now) {
				add("budget", &b.c.shared, SharedKey)
			}
		}
		l.budgetMu.Unlock()
	}
	slices.SortFunc(out, func(a, b Bucket) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), compareRule(a.Rule, b.Rule), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// compareRule orders "rate_limits[2]" before "rate_limits[10]".
func compareRule(a, b string) int {
	if len(a) != len(b) {
		return cmp.Compare(len(a), len(b))
	}
	return cmp.Compare(a, b)
}

// Tracked returns how many buckets the rate-limit and budget tables hold.
func (l *Limiter) Tracked() (rate, budgets int) {
	l.rateMu.Lock()
	rate = len(l.rate.m)
	l.rateMu.Unlock()
	l.budgetMu.Lock()
	budgets = len(l.budgets.m)
	l.budgetMu.Unlock()
	return rate, budgets
}

// String describes the configuration, for logs.
func (l *Limiter) String() string {
	rs := l.rules.Load()
	return fmt.Sprintf("%d rate_limits rules, %d budgets", len(rs.rate), len(rs.budgets))
}
