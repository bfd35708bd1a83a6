package ratelimit_test

import (
	"math"
	"path"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/ratelimit"
)

// debt is what the tracked buckets are owed at now: the sum of burst - tokens.
// Forgetting or creating a full bucket leaves it unchanged.
func debt(t *testing.T, l *ratelimit.Limiter, now time.Time) float64 {
	t.Helper()
	d := 0.0
	for _, b := range l.Status("", now) {
		if b.Tokens < -1e-9 || b.Tokens > b.Burst+1e-9 {
			t.Fatalf("bucket %+v holds tokens outside [0, burst]", b)
		}
		d += b.Burst - b.Tokens
	}
	return d
}

// FuzzTake drives Take with budget keys and costs taken from the fuzzer's bytes,
// as a policy would derive them from untrusted requests, and checks that a
// refused Take spends nothing and an admitted one spends exactly the costs named
// (each rounded up to 0.001, the budgets' granularity).
// With a tiny table (eviction, shared buckets) a newly tracked key may start with
// its shared bucket's debt, so there the check is that no debt is ever forgiven.
func FuzzTake(f *testing.F) {
	f.Add(byte(0), []byte{1, 2, 0, 'a', 16, 1, 'b', 32})
	f.Add(byte(3), []byte{0, 3, 0, 'a', 40, 0, 'a', 40, 2, 'z', 1, 60, 1, 1, 'q', 200})
	f.Add(byte(1), []byte{0, 1, 3, 'x', 1, 255, 2, 0, 'a', 255, 0, 'b', 255})
	budgets := []config.Budget{
		{Prefix: "a:", Limit: 5, Per: time.Minute},
		{Prefix: "a:b", Limit: 1.5, Per: time.Hour},
		{Prefix: "c:", Limit: 0.25, Per: time.Second},
	}
	prefixes := []string{"a:", "a:b", "c:", "x:"} // x: has no budget
	f.Fuzz(func(t *testing.T, capacity byte, ops []byte) {
		exact := capacity%4 == 0
		max := 1 + int(capacity%4)
		if exact {
			max = 1000
		}
		l, err := ratelimit.New(nil, budgets, t0, ratelimit.Options{MaxBuckets: max, IdleTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		for len(ops) >= 2 {
			now = now.Add(time.Duration(ops[0]) * 100 * time.Millisecond)
			n := int(ops[1] % 4)
			ops = ops[2:]
			var take []policy.Budget
			sum := 0.0
			for ; n > 0 && len(ops) >= 3; n-- {
				key := prefixes[int(ops[0])%len(prefixes)] + string(ops[1:2])
				cost := float64(ops[2]) / 16
				take = append(take, policy.Budget{Key: key, Cost: cost})
				// Budgets count in milli-units and round a cost up: 1/16 costs 0.063.
				sum += math.Ceil(cost*1000) / 1000
				ops = ops[3:]
			}
			before := debt(t, l, now)
			ok, wait, key := l.Take(take, now)
			after := debt(t, l, now)
			switch {
			case ok && (wait != 0 || key != ""):
				t.Fatalf("Take(%v) = ok with wait %v key %q", take, wait, key)
			case !ok && (wait == 0 || key == ""):
				t.Fatalf("Take(%v) refused without a wait or key: %v %q", take, wait, key)
			case ok && exact && math.Abs(after-before-sum) > 1e-6:
				t.Fatalf("Take(%v) admitted: debt %v -> %v, want +%v", take, before, after, sum)
			case ok && after < before+sum-1e-6:
				t.Fatalf("Take(%v) admitted: debt %v -> %v, want at least +%v", take, before, after, sum)
			case !ok && exact && math.Abs(after-before) > 1e-6:
				t.Fatalf("Take(%v) refused (%v, %q) but debt %v -> %v", take, wait, key, before, after)
			case !ok && after < before-1e-6:
				t.Fatalf("Take(%v) refused (%v, %q) but forgave debt %v -> %v", take, wait, key, before, after)
			}
		}
	})
}

// matched reports whether a rule with principal glob pg and method glob mg limits
// id calling method: with a burst of 1, the second call is refused only then.
func matched(t *testing.T, pg, mg, id, method string) bool {
	t.Helper()
	l, err := ratelimit.New([]config.RateLimitRule{{Match: config.RateLimitMatch{Principal: pg, Method: mg}, RPS: 1, Burst: 1}}, nil, t0, ratelimit.Options{})
	if err != nil {
		t.Fatalf("New(principal %q, method %q): %v", pg, mg, err)
	}
	p := identity.Principal{ID: id, Kind: "human"}
	l.Allow(p, method, false, t0)
	ok, _, _ := l.Allow(p, method, false, t0)
	return !ok
}

// FuzzRuleGlobs checks that rules match exactly as path.Match says (the limiter
// skips path.Match when a glob's literal prefix already rules a call out).
func FuzzRuleGlobs(f *testing.F) {
	f.Add("spiffe://example.org/ns/*/sa/deployer", "spiffe://example.org/ns/prod/sa/deployer", "/etcdserverpb.KV/*", "/etcdserverpb.KV/Put")
	f.Add("spiffe://example.org/user/[a-c]*", "spiffe://example.org/user/bob", "/*/Put", "/x.Y/Put")
	f.Add("cn:?lice", "cn:alice", "/etcdserverpb.KV/Range", "/etcdserverpb.KV/RangeX")
	f.Add(`cn:\*`, "cn:*", "", "/a/b")
	f.Fuzz(func(t *testing.T, pg, id, mg, method string) {
		if _, err := path.Match(pg, ""); err != nil {
			return
		}
		if _, err := path.Match(mg, ""); err != nil {
			return
		}
		okP, _ := path.Match(pg, id)
		okM, _ := path.Match(mg, method)
		want := (pg == "" || okP) && (mg == "" || okM)
		if got := matched(t, pg, mg, id, method); got != want {
			t.Errorf("rule {principal: %q, method: %q} applies to %q calling %q = %v, want %v (path.Match)", pg, mg, id, method, got, want)
		}
	})
}
