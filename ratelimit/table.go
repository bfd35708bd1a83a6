package ratelimit

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// Budget costs are fractional (a policy may say cost 0.5) but rate.Limiter
// takes whole tokens, so a budget bucket counts milli-units: its burst is the
// limit × 1000, its rate limit × 1000 per period, and a cost is charged as
// cost × 1000 rounded up. Costs are therefore exact to 0.001; a finer cost
// costs the next 0.001 (the limit never gets looser). A rate-limit bucket
// counts plain tokens: one per message.
const (
	rateScale   = 1
	budgetScale = 1000
)

// relTol lets a scaled decimal count as the whole number it stands for, which
// float64 may miss by an ulp either way: 2.007 × 1000 is 2007.0000000000002 and
// must cost 2007 milli-units, not 2008 (a cost rounds up); 1.001 × 1000 is
// 1000.9999999999999 and a limit of 1.001 must hold 1001, not 1000 (a burst
// rounds down).
const relTol = 1e-12

// maxBurst keeps a scaled burst an exact float64 and a valid int.
const maxBurst = 1 << 53

// class is one configured rule (a rate_limits entry or a budgets prefix): the
// parameters its buckets share and the bucket shared by the names the table had
// no room for. A class outlives a reload that keeps its rule (see Update), which
// is how its buckets survive the reload.
type class struct {
	rule string // "rate_limits[1]" or "budgets[0]", for reasons and status
	unit string // a rate rule's config unit ("messages", "response_bytes", ...); "" for a budget
	// removed is set (under both of the Limiter's locks) when a reload drops
	// the rule: a Meter still holding the class charges nothing.
	removed bool
	rate    float64 // units (tokens, budget cost) added per second, as configured
	burst   float64 // bucket size in units, as configured
	// The same in the limiter's whole tokens (units × scale).
	scale  float64
	limit  rate.Limit
	burstN int
	shared entry // the overflow bucket (key.name == "", never in the table)
}

// params are a class's parameters as a configuration generation gives them.
type params struct {
	rule               string
	rate, burst, scale float64
}

func (p params) limit() rate.Limit { return rate.Limit(p.rate * p.scale) }

// burstN rounds the scaled burst down: a limit of 0.0015 is 1 milli-unit.
func (p params) burstN() int {
	b := p.burst * p.scale
	return int(min(math.Floor(b+b*relTol), maxBurst))
}

// apply sets c's parameters to p. The caller re-configures c's buckets.
func (c *class) apply(p params) {
	c.rule, c.rate, c.burst, c.scale = p.rule, p.rate, p.burst, p.scale
	c.limit, c.burstN = p.limit(), p.burstN()
}

// tokens converts a cost in units to the limiter's whole tokens, rounding up.
// The result is a whole number, kept in a float64 so that a huge cost compares
// against the burst without overflowing an int.
func (c *class) tokens(units float64) float64 {
	x := units * c.scale
	return math.Ceil(x - x*relTol)
}

// bucketKey names a bucket: the rule it belongs to and the principal id or budget key,
// and for a method with a bucket of its own (Options.Separate) that method.
type bucketKey struct {
	c      *class
	name   string
	method string
}

// entry is one token bucket: a rate.Limiter driven with the caller's time, never
// time.Now. The limiter is a field, not a pointer, so that a bucket is one
// allocation; its own mutex is never contended, since the table's mutex is
// held whenever it is used.
type entry struct {
	key bucketKey
	lim rate.Limiter
	// last is the latest time the bucket was used, never earlier than any time
	// given to lim. Every call passes lim at least last, so a clock that goes
	// backwards refills nothing (rate.Limiter would refill again the time it
	// went back), and an idle bucket is found by it.
	last time.Time
	// Neighbours in the table's ring, most recently used first.
	prev, next *entry
	// pin marks the entries one Take is working on, so making room for one of
	// its keys never evicts another.
	pin uint64
}

// init makes e a bucket of class c holding n whole tokens (0 <= n <= c.burstN)
// at now. rate.NewLimiter returns a pointer, which would cost the bucket a
// second allocation, and always starts full; so the limiter is set up in place
// from its zero value, which holds no tokens: with a rate of n per second for
// the second before now, the refill that SetLimitAt makes at now is exactly n
// (the product of two small integers) and no more than the burst.
func (e *entry) init(c *class, n int, now time.Time) {
	before := now.Add(-time.Second)
	e.lim.SetBurstAt(before, c.burstN)
	e.lim.SetLimitAt(before, rate.Limit(n))
	e.lim.SetLimitAt(now, c.limit)
	e.last = now
}

// at is the time to give the limiter for a call at now: now, unless the clock
// went backwards.
func (e *entry) at(now time.Time) time.Time {
	if now.After(e.last) {
		return now
	}
	return e.last
}

// level is what the bucket holds at now, in the limiter's tokens.
func (e *entry) level(now time.Time) float64 {
	// rate.Limiter grants a request short by less than a nanosecond of refill
	// and may so hold a hair below zero; that is none.
	return max(e.lim.TokensAt(e.at(now)), 0)
}

// units is the level at now in the class's units (budget cost, tokens).
func (e *entry) units(now time.Time) float64 {
	return e.level(now) / e.key.c.scale
}

// full reports whether the bucket is at its burst at now. Only a full bucket may
// be forgotten: re-creating it later yields the same state.
func (e *entry) full(now time.Time) bool {
	return e.lim.TokensAt(e.at(now)) >= float64(e.key.c.burstN)
}

// grants reports whether the bucket, holding tokens, grants n of them.
// rate.Limiter grants a request whose shortfall refills in under a nanosecond
// (so that float error in a refill does not refuse a due token); grants
// demands under half a nanosecond, so that whenever it says yes, AllowN does
// too: Take checks every bucket first and relies on that to take from all or
// from none.
func (e *entry) grants(tokens, n float64) bool {
	c := e.key.c
	if n > float64(c.burstN) {
		return false
	}
	short := n - tokens
	return short <= 0 || short/float64(c.limit)*float64(time.Second) < 0.5
}

// can reports whether take(n, now) would succeed.
func (e *entry) can(n float64, now time.Time) bool {
	return e.grants(e.lim.TokensAt(e.at(now)), n)
}

// whole is the number of whole tokens the bucket grants at now.
func (e *entry) whole(now time.Time) int {
	t := e.lim.TokensAt(e.at(now))
	n := max(math.Floor(t), 0)
	if e.grants(t, n+1) {
		n++ // 0.9999999999 tokens after a refill of one is one
	}
	return int(min(n, float64(e.key.c.burstN)))
}

// take removes n whole tokens when the bucket holds them at now and reports
// whether it did.
func (e *entry) take(n int, now time.Time) bool {
	at := e.at(now)
	e.last = at
	return e.lim.AllowN(at, n)
}

// wait is how long until the bucket holds n tokens, counted from now, to the
// nearest nanosecond. It is never zero for a bucket that lacks tokens, so a
// caller is never told to retry at once. It is computed from the level rather
// than with ReserveN, which would allocate and take the tokens in advance.
func (e *entry) wait(n float64, now time.Time) time.Duration {
	t := e.lim.TokensAt(e.at(now))
	if e.grants(t, n) {
		return 0
	}
	ns := math.Round((n - t) / float64(e.key.c.limit) * float64(time.Second))
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(time.Duration(ns), 1)
}

// reconfigure applies the class parameters p at now: the time already past
// refills at the old rate, the time to come at the new one. A level above a
// smaller new burst is capped by the limiter at its next use.
func (e *entry) reconfigure(p params, now time.Time) {
	at := e.at(now)
	e.lim.SetLimitAt(at, p.limit())
	e.lim.SetBurstAt(at, p.burstN())
	e.last = at
}

// table holds the tracked buckets of one kind (rate limits or budgets) under a
// cap. It is not safe for concurrent use; the Limiter's mutexes guard it.
//
// Eviction never loses a debt: only a full bucket is dropped, and a bucket
// created later for the same name starts no fuller than the class's shared
// bucket. When the table is at its cap and nothing in it is full, a new name
// draws on its class's shared bucket instead of getting one of its own, so a
// flood of new names cannot reset anybody's bucket nor grow memory: names beyond
// the cap are limited together, never less strictly than alone.
type table struct {
	max  int
	idle time.Duration
	m    map[bucketKey]*entry
	ring entry // sentinel: ring.next is the most, ring.prev the least recently used
	pin  uint64
}

// scanLimit bounds the entries one insertion inspects for eviction, so a table
// full of busy buckets costs a new name a constant amount of work.
const scanLimit = 8

func newTable(maxEntries int, idle time.Duration) *table {
	// pin starts above the zero every entry starts with: only a Take pins.
	t := &table{max: maxEntries, idle: idle, m: make(map[bucketKey]*entry), pin: 1}
	t.ring.next, t.ring.prev = &t.ring, &t.ring
	return t
}

func (t *table) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (t *table) pushFront(e *entry) {
	e.prev, e.next = &t.ring, t.ring.next
	t.ring.next.prev = e
	t.ring.next = e
}

func (t *table) touch(e *entry) {
	if t.ring.next != e {
		t.unlink(e)
		t.pushFront(e)
	}
}

func (t *table) remove(e *entry) {
	t.unlink(e)
	delete(t.m, e.key)
}

// get returns the bucket of k, creating it when needed. shared reports that the
// table had no room and the returned bucket is k's class's shared one.
func (t *table) get(k bucketKey, now time.Time) (e *entry, shared bool) {
	if e, ok := t.m[k]; ok {
		t.touch(e)
		return e, false
	}
	if len(t.m) >= t.max && !t.evict(now, scanLimit, 0) {
		return &k.c.shared, true
	}
	// A new bucket starts as full as the class's shared bucket: full, unless the
	// table recently overflowed, in which case this name may have been drawing on
	// the shared bucket and must not get a fresh burst on top of it. A fraction
	// of a token (of a milli-unit, for a budget) is left out: never fuller.
	e = &entry{key: k}
	e.init(k.c, k.c.shared.whole(now), now)
	t.m[k] = e
	t.pushFront(e)
	return e, false
}

// evict inspects up to n buckets from the least recently used end and drops
// the first one that is full and has been unused for at least minIdle. A bucket
// inspected and kept moves to the front, so successive calls walk the whole
// table instead of stopping at one slowly refilling bucket. It reports whether
// a bucket was dropped.
func (t *table) evict(now time.Time, n int, minIdle time.Duration) bool {
	for range n {
		e := t.ring.prev
		if e == &t.ring {
			return false
		}
		if e.pin != t.pin && e.full(now) && now.Sub(e.last) >= minIdle {
			t.remove(e)
			return true
		}
		if e.next == &t.ring && e.prev == &t.ring {
			return false // the only bucket, and it stays
		}
		t.touch(e)
	}
	return false
}

// sweep drops at most one bucket that has been full and unused for the idle
// time. Called once per operation, it forgets idle callers at the rate the
// limiter is used, with no goroutine of its own.
func (t *table) sweep(now time.Time) {
	e := t.ring.prev
	if e == &t.ring || now.Sub(e.last) < t.idle {
		return
	}
	t.evict(now, 1, t.idle)
}

// drop removes every bucket of the classes for which gone is true.
func (t *table) drop(gone func(*class) bool) {
	for k, e := range t.m {
		if gone(k.c) {
			t.remove(e)
		}
	}
}
