package ratelimit

import (
	"strconv"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
)

// Meter charges the responses of one call to the bucket of its principal
// under the response-volume rule (unit response_bytes or response_messages)
// that matched the call. It is safe for concurrent use; a nil *Meter is
// never returned for a call a rule applies to.
type Meter struct {
	l     *Limiter
	rule  *rateRule
	key   bucketKey
	bytes bool
}

// Meter returns the meter for p's call of method under the first response-volume
// rule that matches, or nil when none does. When the rule says
// breakglass_bypass, Bypassable reports it and the caller drops the meter for
// a call under a break-glass grant. The rule is resolved once per call: a
// reload that changes the rule's rps or burst applies to calls in progress,
// one that removes the rule stops charging them, and one that adds a rule
// applies from the next call on.
func (l *Limiter) Meter(p identity.Principal, method string) *Meter {
	if len(l.rules.Load().volume) == 0 {
		return nil // the common case, without the lock
	}
	l.rateMu.Lock()
	defer l.rateMu.Unlock()
	r := first(l.rules.Load().volume, p, method)
	if r == nil {
		return nil
	}
	return &Meter{l: l, rule: r, key: bucketKey{c: r.c, name: p.ID}, bytes: r.bytes}
}

// Bypassable reports that the meter's rule says breakglass_bypass.
func (m *Meter) Bypassable() bool { return m.rule.bypass }

// Charge charges one response message of size bytes, about to be sent, at now.
// The message may be sent (ok) when the bucket is not empty; it is charged its
// whole cost (its size for response_bytes, 1 for response_messages), which may
// take the bucket below zero: the debt is repaid by the refill before the
// bucket grants anything again. So over any period t a principal receives at
// most burst + rps × t units, plus the one message that emptied the bucket.
//
// A message that finds the bucket empty is refused with the time until the
// bucket holds a unit again. A message costing more than the rule's burst is
// refused with NotRetryable whatever the bucket holds: it could never fit,
// and allowing it once would make the bound as large as the largest message
// (etcd answers a whole-keyspace Range in one message).
func (m *Meter) Charge(size int, now time.Time) (ok bool, retryAfter time.Duration, reason string) {
	cost := 1
	if m.bytes {
		cost = size
	}
	l := m.l
	l.rateMu.Lock()
	defer l.rateMu.Unlock()
	c := m.key.c
	if c.removed {
		return true, 0, ""
	}
	if cost > c.burstN {
		return false, NotRetryable, c.rule + " for " + m.key.name + ": a response message of " +
			strconv.Itoa(cost) + " " + c.unitName() + " exceeds its burst of " + strconv.Itoa(c.burstN)
	}
	e, shared := l.rate.get(m.key, now)
	if !e.can(1, now) {
		wait := e.wait(1, now)
		l.rate.sweep(now)
		return false, wait, l.volumeBucketName(c, m.key.name, shared)
	}
	at := e.at(now)
	e.last = at
	if cost > 0 {
		// ReserveN, unlike AllowN, may take the bucket below zero; cost <= burst,
		// so it always succeeds. Inlined, its *Reservation does not escape.
		e.lim.ReserveN(at, cost)
	}
	l.rate.sweep(now)
	return true, 0, ""
}

// volumeLeft refuses a client message of p calling method while the bucket of
// the response-volume rule matching the call is empty: a call whose responses
// the rule would cut at once is refused before the upstream does the work. It
// takes nothing. The caller holds rateMu.
func (l *Limiter) volumeLeft(rs *rules, p identity.Principal, method string, breakglass bool, now time.Time) (ok bool, retryAfter time.Duration, bucket string) {
	if len(rs.volume) == 0 {
		return true, 0, ""
	}
	r := first(rs.volume, p, method)
	if r == nil || (breakglass && r.bypass) {
		return true, 0, ""
	}
	e, shared := l.rate.get(bucketKey{c: r.c, name: p.ID}, now)
	if e.can(1, now) {
		return true, 0, ""
	}
	return false, e.wait(1, now), l.volumeBucketName(r.c, p.ID, shared)
}

// volumeBucketName names an empty response-volume bucket in refusals, such as
// "rate_limits[2] for spiffe://example.org/user/alice (response_bytes)".
func (l *Limiter) volumeBucketName(c *class, name string, shared bool) string {
	if shared {
		return c.rule + " (" + c.unit + ", shared by principals beyond " + strconv.Itoa(l.rate.max) + " tracked buckets)"
	}
	return c.rule + " for " + name + " (" + c.unit + ")"
}

func (c *class) unitName() string {
	if c.unit == config.UnitResponseBytes {
		return "bytes"
	}
	return "messages"
}
