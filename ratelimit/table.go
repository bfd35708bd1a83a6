package ratelimit

import (
	"math"
	"time"
)

// epsilon absorbs floating-point error in refills: a bucket that refilled for
// exactly the time one token takes may hold 0.9999999999 tokens, which must count
// as one. It is far below any cost a policy can name meaningfully.
const epsilon = 1e-9

// class is one configured rule (a rate_limits entry or a budgets prefix): the
// parameters its buckets share and the bucket shared by the names the table had
// no room for. A class outlives a reload that keeps its rule (see Update), which
// is how its buckets survive the reload.
type class struct {
	rule   string  // "rate_limits[1]" or "budgets[0]", for reasons and status
	rate   float64 // tokens added per second
	burst  float64 // bucket size
	shared entry   // the overflow bucket (key.name == "", never in the table)
}

// bucketKey names a bucket: the rule it belongs to and the principal id or budget key.
type bucketKey struct {
	c    *class
	name string
}

// entry is one token bucket. tokens is the level at last; the level at a later
// time is computed, never stored ahead (the bucket needs no timer).
type entry struct {
	key    bucketKey
	tokens float64
	last   time.Time
	// Neighbours in the table's ring, most recently used first.
	prev, next *entry
	// pin marks the entries one Take is working on, so making room for one of
	// its keys never evicts another.
	pin uint64
}

// level is the number of tokens at now. A clock that went backwards adds nothing.
func (e *entry) level(now time.Time) float64 {
	d := now.Sub(e.last)
	if d <= 0 {
		return e.tokens
	}
	t := e.tokens + d.Seconds()*e.key.c.rate
	if t > e.key.c.burst {
		return e.key.c.burst
	}
	return t
}

// full reports whether the bucket is at its burst at now. Only a full bucket may
// be forgotten: re-creating it later yields the same state.
func (e *entry) full(now time.Time) bool {
	return e.level(now) >= e.key.c.burst-epsilon
}

// take removes n tokens when the bucket holds them at now and reports whether
// it did. Either way the level is settled at now.
func (e *entry) take(n float64, now time.Time) bool {
	l := e.level(now)
	ok := l+epsilon >= n
	if ok {
		l = max(l-n, 0)
	}
	e.tokens = l
	if now.After(e.last) {
		e.last = now
	}
	return ok
}

// wait is how long until the bucket holds n tokens, counted from now, to the
// nearest nanosecond (take's tolerance absorbs the rounding). It is never zero for
// a bucket that lacks tokens, so a caller is never told to retry at once.
func (e *entry) wait(n float64, now time.Time) time.Duration {
	missing := n - e.level(now)
	if missing <= epsilon {
		return 0
	}
	ns := math.Round(missing / e.key.c.rate * float64(time.Second))
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(time.Duration(ns), 1)
}

// settle records the level at now, so the class's parameters can change
// without the change applying to time already past.
func (e *entry) settle(now time.Time) {
	e.tokens = e.level(now)
	if now.After(e.last) {
		e.last = now
	}
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
	// the shared bucket and must not get a fresh burst on top of it.
	e = &entry{key: k, tokens: k.c.shared.level(now), last: now}
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
