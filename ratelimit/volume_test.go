package ratelimit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/ratelimit"
)

// humanRangeBytes bounds humans' Range responses to 1000 bytes, refilling at 100/s.
var humanRangeBytes = config.RateLimitRule{
	Match: config.RateLimitMatch{Kind: "human", Method: rng},
	Unit:  config.UnitResponseBytes, RPS: 100, Burst: 1000,
}

func mustCharge(t *testing.T, m *ratelimit.Meter, size int, now time.Time) {
	t.Helper()
	if ok, wait, why := m.Charge(size, now); !ok {
		t.Fatalf("Charge(%d) refused: %v %s", size, wait, why)
	}
}

// TestMeterDebt: a message is sent while the bucket is not empty and charged
// in full, below zero; the debt is repaid before anything else is granted,
// to responses and to the principal's next requests alike.
func TestMeterDebt(t *testing.T) {
	l := newLimiter(t, []config.RateLimitRule{humanRangeBytes}, nil, ratelimit.Options{})
	m := l.Meter(alice, rng)
	if m == nil {
		t.Fatal("no meter for a matching call")
	}
	mustCharge(t, m, 600, t0) // 1000 → 400
	mustCharge(t, m, 900, t0) // 400 → -500: one message past the bucket
	ok, wait, why := m.Charge(1, t0)
	if ok || wait != 5010*time.Millisecond || why != "rate_limits[0] for "+alice.ID+" (response_bytes)" {
		t.Fatalf("Charge on an empty bucket = %v, %v, %q; want refused for 5.01s naming the bucket", ok, wait, why)
	}
	// The principal's next call is refused before it reaches the upstream.
	if ok, wait, bucket := l.Allow(alice, rng, false, t0.Add(time.Second)); ok || wait != 4010*time.Millisecond || !strings.Contains(bucket, "rate_limits[0]") {
		t.Fatalf("Allow while in debt = %v, %v, %q", ok, wait, bucket)
	}
	// Other principals, methods and rules are not affected.
	if ok, _, _ := l.Allow(bob, rng, false, t0); !ok {
		t.Error("bob refused by alice's debt")
	}
	if ok, _, _ := l.Allow(alice, put, false, t0); !ok {
		t.Error("alice's Put refused by her Range debt")
	}
	if ok, _, _ := l.Allow(alice, rng, false, t0.Add(5010*time.Millisecond)); !ok {
		t.Error("Allow refused once the debt is repaid")
	}
	mustCharge(t, m, 1000, t0.Add(5010*time.Millisecond))
}

// TestMeterOverBurst: a message costing more than the burst is refused, not
// retryable, and charges nothing; response_messages counts 1 per message.
func TestMeterOverBurst(t *testing.T) {
	msgs := config.RateLimitRule{Match: config.RateLimitMatch{Method: watch}, Unit: config.UnitResponseMessages, RPS: 1, Burst: 2}
	l := newLimiter(t, []config.RateLimitRule{humanRangeBytes, msgs}, nil, ratelimit.Options{})
	m := l.Meter(alice, rng)
	ok, wait, why := m.Charge(1001, t0)
	if ok || wait != ratelimit.NotRetryable || !strings.Contains(why, "a response message of 1001 bytes exceeds its burst of 1000") {
		t.Fatalf("Charge(1001) = %v, %v, %q", ok, wait, why)
	}
	mustCharge(t, m, 1000, t0) // the refused message took nothing

	w := l.Meter(deployer, watch)
	mustCharge(t, w, 1<<20, t0)
	mustCharge(t, w, 1<<20, t0)
	if ok, _, why := w.Charge(0, t0); ok || !strings.Contains(why, "(response_messages)") {
		t.Fatalf("third message = %v %q, want refused", ok, why)
	}
}

// TestMeterMatching: volume rules are matched apart from request rules (a
// request rule listed first does not hide them, nor they it); no rule, or
// breakglass_bypass with a grant, means no meter.
func TestMeterMatching(t *testing.T) {
	req := config.RateLimitRule{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 1}
	bypass := humanRangeBytes
	bypass.BreakglassBypass = true
	l := newLimiter(t, []config.RateLimitRule{req, bypass}, nil, ratelimit.Options{})
	if l.Meter(alice, rng) == nil {
		t.Error("a request rule listed first hid the volume rule")
	}
	if m := l.Meter(alice, rng); m == nil || !m.Bypassable() {
		t.Error("a breakglass_bypass rule's meter is not Bypassable")
	}
	if l.Meter(deployer, rng) != nil || l.Meter(alice, put) != nil {
		t.Error("metered a call the rule does not match")
	}
	// The request rule still limits requests: one token, then refused.
	if ok, _, _ := l.Allow(alice, rng, false, t0); !ok {
		t.Fatal("first request refused")
	}
	if ok, _, bucket := l.Allow(alice, rng, false, t0); ok || !strings.HasPrefix(bucket, "rate_limits[0]") {
		t.Fatalf("second request = %v %q, want refused by rate_limits[0]", ok, bucket)
	}
	if l.Meter(alice, rng) == nil {
		t.Fatal("no meter")
	}
	none := newLimiter(t, nil, nil, ratelimit.Options{})
	if none.Meter(alice, rng) != nil {
		t.Error("a meter with no rules")
	}
}

// TestMeterReload: a reload keeping the rule (same match and unit) keeps the
// debt; one removing it stops charging meters of calls in progress; the unit
// is part of a rule's identity.
func TestMeterReload(t *testing.T) {
	l := newLimiter(t, []config.RateLimitRule{humanRangeBytes}, nil, ratelimit.Options{})
	m := l.Meter(alice, rng)
	mustCharge(t, m, 1000, t0) // 1000 → 0: empty
	if ok, _, _ := m.Charge(1, t0); ok {
		t.Fatal("an empty bucket granted a message")
	}
	kept := humanRangeBytes
	kept.RPS = 1
	if err := l.Update([]config.RateLimitRule{kept}, nil, t0); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := m.Charge(1, t0); ok {
		t.Fatal("a reload that kept the rule reset its debt")
	}
	otherUnit := kept
	otherUnit.Unit = config.UnitResponseMessages
	if err := l.Update([]config.RateLimitRule{otherUnit}, nil, t0); err != nil {
		t.Fatal(err)
	}
	mustCharge(t, m, 5000, t0) // the rule m was charging is gone
	if ok, _, _ := l.Allow(alice, rng, false, t0); !ok {
		t.Fatal("new rule (another unit) started with the old rule's debt")
	}
}

func TestMeterInvalidUnit(t *testing.T) {
	bad := humanRangeBytes
	bad.Unit = "bytes"
	_, err := ratelimit.New([]config.RateLimitRule{bad}, nil, t0, ratelimit.Options{})
	if !errors.Is(err, ratelimit.ErrInvalidRule) || !strings.Contains(err.Error(), `rate_limits[0].unit "bytes"`) {
		t.Fatalf("New with unit bytes = %v", err)
	}
}

// bottomless is a meter whose bucket never runs dry at 4 kB a microsecond.
func bottomless(t testing.TB) *ratelimit.Meter {
	rule := humanRangeBytes
	rule.RPS, rule.Burst = 1e15, 1<<50
	return newLimiter(t, []config.RateLimitRule{rule}, nil, ratelimit.Options{}).Meter(alice, rng)
}

// TestMeterAllocs: charging a response allocates nothing.
func TestMeterAllocs(t *testing.T) {
	m := bottomless(t)
	now := t0
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		mustCharge(t, m, 4096, now)
	}); n != 0 {
		t.Errorf("Charge allocates %v times", n)
	}
}

func BenchmarkMeterCharge(b *testing.B) {
	m := bottomless(b)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		if ok, _, _ := m.Charge(4096, now); !ok {
			b.Fatal("refused")
		}
	}
}

// FuzzMeterBound charges response sizes at times taken from the fuzzer's bytes
// and checks the documented bound: a message is granted only while what was
// granted before it is below burst + rps × elapsed (so at most one message
// lies past the bucket), no message above burst is ever granted, and a refused
// message charges nothing.
func FuzzMeterBound(f *testing.F) {
	f.Add([]byte{0, 200, 0, 200, 0, 200, 10, 50, 0, 255, 1, 1})
	f.Add([]byte{0, 255, 0, 255, 255, 255, 3, 0, 0, 100})
	const rps, burst = 100.0, 500
	f.Fuzz(func(t *testing.T, ops []byte) {
		l := newLimiter(t, []config.RateLimitRule{{
			Match: config.RateLimitMatch{Method: rng}, Unit: config.UnitResponseBytes, RPS: rps, Burst: burst,
		}}, nil, ratelimit.Options{})
		m := l.Meter(alice, rng)
		now := t0
		granted := 0.0
		for len(ops) >= 2 {
			now = now.Add(time.Duration(ops[0]) * 10 * time.Millisecond)
			size := int(ops[1]) * 3 // up to 765: some above the burst
			ops = ops[2:]
			before := granted
			ok, wait, _ := m.Charge(size, now)
			if !ok {
				if size <= burst && wait <= 0 {
					t.Fatalf("refused %d bytes with wait %v", size, wait)
				}
				continue
			}
			if size > burst {
				t.Fatalf("granted %d bytes, above the burst %d", size, burst)
			}
			if limit := burst + rps*now.Sub(t0).Seconds(); before >= limit+1e-6 {
				t.Fatalf("granted a message after %v bytes, at or past the bucket's %v", before, limit)
			}
			granted += float64(size)
		}
	})
}
