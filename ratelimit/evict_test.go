package ratelimit_test

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/ratelimit"
)

func human(i int) identity.Principal {
	return identity.Principal{ID: "spiffe://example.org/user/u" + strconv.Itoa(i), Kind: "human"}
}

// humans: 1 token per second, burst 2.
var humans = []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 2}}

func TestIdleBucketsAreForgotten(t *testing.T) {
	l := newLimiter(t, humans, nil, ratelimit.Options{IdleTimeout: time.Minute})
	for i := range 10 {
		l.Allow(human(i), put, false, t0)
	}
	if n, _ := l.Tracked(); n != 10 {
		t.Fatalf("tracked after 10 principals = %d, want 10", n)
	}
	// Full again after 1s, but not idle for a minute yet: kept.
	for i := range 5 {
		l.Allow(alice, put, false, t0.Add(30*time.Second+time.Duration(i)*time.Second))
	}
	if n, _ := l.Tracked(); n != 11 {
		t.Errorf("tracked 30s later = %d, want 11 (nothing idle for IdleTimeout yet)", n)
	}
	// A minute later every call forgets one idle full bucket.
	at := t0.Add(2 * time.Minute)
	for range 10 {
		l.Allow(alice, put, false, at)
	}
	if n, _ := l.Tracked(); n != 1 {
		t.Errorf("tracked after the others idled = %d, want 1 (alice only)", n)
	}
	if st := l.Status("", at); len(st) != 1 || st[0].Key != alice.ID {
		t.Errorf("Status = %+v, want alice's bucket only", st)
	}
}

func TestEvictionNeverForgivesADebt(t *testing.T) {
	const max = 4
	l := newLimiter(t, humans, nil, ratelimit.Options{MaxBuckets: max, IdleTimeout: time.Second})
	// alice drains her bucket.
	l.Allow(alice, put, false, t0)
	l.Allow(alice, put, false, t0)
	// A flood of new principals at the same instant: their buckets are below the
	// burst too, so none can be forgotten; beyond the cap they share one bucket.
	refusedShared := 0
	for i := range 100 {
		ok, _, bucket := l.Allow(human(i), put, false, t0)
		if !ok {
			refusedShared++
			if want := "rate_limits[0] (shared by principals beyond 4 tracked buckets)"; bucket != want {
				t.Fatalf("flood call %d refused by %q, want %q", i, bucket, want)
			}
		}
	}
	if n, _ := l.Tracked(); n != max {
		t.Errorf("tracked after the flood = %d, want the cap %d", n, max)
	}
	// 3 got buckets of their own; the other 97 drew on the shared bucket (burst 2).
	if refusedShared != 95 {
		t.Errorf("flood calls refused = %d, want 95 (97 sharing a bucket of 2)", refusedShared)
	}
	if ok, _, _ := l.Allow(alice, put, false, t0); ok {
		t.Errorf("alice allowed during the flood: her empty bucket was reset")
	}

	// Once buckets refill, full ones make room: newcomers calling at a sustainable
	// pace get buckets of their own again.
	later := t0.Add(time.Minute)
	for i := range 10 {
		at := later.Add(time.Duration(i) * time.Second)
		if ok, _, bucket := l.Allow(human(100+i), put, false, at); !ok || bucket != "" {
			t.Errorf("new principal %d after the flood = %v, %q; want allowed", 100+i, ok, bucket)
		}
	}
	st := l.Status("", later.Add(10*time.Second))
	for _, b := range st {
		if b.Key == ratelimit.SharedKey {
			t.Errorf("Status lists the shared bucket %+v after it refilled, want only buckets below their burst or recently used", b)
		}
	}
	if len(st) == 0 || len(st) > max {
		t.Errorf("Status after the flood = %d buckets, want 1..%d", len(st), max)
	}
}

func TestNewBucketStartsNoFullerThanTheSharedOne(t *testing.T) {
	l := newLimiter(t, humans, nil, ratelimit.Options{MaxBuckets: 1, IdleTimeout: time.Second})
	l.Allow(alice, put, false, t0) // alice holds the only slot, below burst
	// bob overflows to the shared bucket and drains it.
	for i, want := range []bool{true, true, false} {
		if ok, _, _ := l.Allow(bob, put, false, t0); ok != want {
			t.Fatalf("bob's call %d on the shared bucket = %v, want %v", i, ok, want)
		}
	}
	// Half a second on, alice's bucket (1.5 tokens) is still not full, the shared
	// one holds 0.5. At 1s alice's bucket is full: bob gets a bucket of his own,
	// starting from the shared bucket's level (1), not from a fresh burst of 2.
	at := t0.Add(time.Second)
	got := 0
	for range 3 {
		if ok, _, _ := l.Allow(bob, put, false, at); ok {
			got++
		}
	}
	if got != 1 {
		t.Errorf("bob allowed %d calls right after moving to his own bucket, want 1 (the shared bucket's level)", got)
	}
	if st := l.Status(bob.ID, at); len(st) != 1 {
		t.Errorf("Status(bob) = %+v, want his own bucket", st)
	}
}

func TestBudgetKeysFloodStaysBounded(t *testing.T) {
	l := newLimiter(t, nil, []config.Budget{{Prefix: "delete:", Limit: 3, Per: time.Hour}}, ratelimit.Options{MaxBuckets: 8})
	ok := 0
	for i := range 1000 {
		if o, _, _ := l.Take([]policy.Budget{{Key: "delete:/k" + strconv.Itoa(i), Cost: 1}}, t0); o {
			ok++
		}
	}
	if _, n := l.Tracked(); n != 8 {
		t.Errorf("budget buckets tracked = %d, want the cap 8", n)
	}
	// 8 keys with buckets of their own, then 3 units from the shared bucket.
	if ok != 11 {
		t.Errorf("deletes allowed = %d, want 11", ok)
	}
}

// TestTakeNeverEvictsItsOwnKeys: making room for one key of a Take must not drop
// the bucket of another key of the same Take.
func TestTakeNeverEvictsItsOwnKeys(t *testing.T) {
	l := newLimiter(t, nil, []config.Budget{{Prefix: "k:", Limit: 1, Per: time.Hour}}, ratelimit.Options{MaxBuckets: 1})
	both := []policy.Budget{{Key: "k:a", Cost: 1}, {Key: "k:b", Cost: 1}}
	if ok, _, _ := l.Take(both, t0); !ok {
		t.Fatalf("first Take(%v) refused", both)
	}
	// k:a has the slot and is empty; k:b drew on the shared bucket.
	for _, k := range []string{"k:a", "k:b"} {
		if ok, _, _ := l.Take([]policy.Budget{{Key: k, Cost: 1}}, t0); ok {
			t.Errorf("Take(%s) after spending it = true, want false", k)
		}
	}
}

// TestFloodMemory: one million distinct principals, each calling once, must not
// grow memory past the cap. The figure is logged (go test -v -run FloodMemory).
func TestFloodMemory(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 200_000
	}
	l := newLimiter(t, []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "automation"}, RPS: 10, Burst: 20}}, nil, ratelimit.Options{})
	before := heap()
	p := identity.Principal{Kind: "automation", Groups: []string{"flood"}}
	buf := []byte("spiffe://example.org/ns/flood/sa/")
	prefix := len(buf)
	for i := range n {
		buf = strconv.AppendInt(buf[:prefix], int64(i), 10)
		p.ID = string(buf)
		// A microsecond apart: a bucket refills its token within 0.1s, so once the
		// table is at its cap, full buckets are forgotten to make room (churn).
		l.Allow(p, put, false, t0.Add(time.Duration(i)*time.Microsecond))
	}
	after := heap()
	tracked, _ := l.Tracked()
	grown := int64(after) - int64(before)
	t.Logf("%d principals: %d buckets tracked, heap grew %.1f MiB (%.0f bytes per bucket)", n, tracked, float64(grown)/(1<<20), float64(grown)/float64(tracked))
	if tracked != ratelimit.DefaultMaxBuckets {
		t.Errorf("tracked = %d, want the cap %d", tracked, ratelimit.DefaultMaxBuckets)
	}
	if limit := int64(40 << 20); grown > limit {
		t.Errorf("heap grew %d bytes for %d principals, want at most %d", grown, n, limit)
	}
	runtime.KeepAlive(l)
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestUpdate(t *testing.T) {
	base := []config.RateLimitRule{
		{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 4},
		{Match: config.RateLimitMatch{Kind: "automation"}, RPS: 1, Burst: 4},
	}
	budgets := []config.Budget{{Prefix: "member-remove:", Limit: 5, Per: time.Hour}, {Prefix: "delete:", Limit: 5, Per: time.Hour}}
	tests := []struct {
		name        string
		rules       []config.RateLimitRule
		budgets     []config.Budget
		wantHuman   float64 // alice's tokens after the update
		wantRule    string
		wantRobot   float64 // deployer's tokens
		wantBudgets map[string]float64
	}{
		{
			name: "same config keeps everything", rules: base, budgets: budgets,
			wantHuman: 1, wantRule: "rate_limits[0]", wantRobot: 3,
			wantBudgets: map[string]float64{"member-remove:etcd": 2, "delete:/x": 4},
		},
		{
			name: "a rule moved keeps its buckets and takes its new name",
			rules: []config.RateLimitRule{
				{Match: config.RateLimitMatch{Principal: "spiffe://example.org/user/zed"}, RPS: 1, Burst: 1},
				base[0], base[1],
			},
			budgets:   budgets,
			wantHuman: 1, wantRule: "rate_limits[1]", wantRobot: 3,
			wantBudgets: map[string]float64{"member-remove:etcd": 2, "delete:/x": 4},
		},
		{
			name: "new rps and a smaller burst apply to the kept buckets",
			rules: []config.RateLimitRule{
				{Match: config.RateLimitMatch{Kind: "human"}, RPS: 100, Burst: 1},
				{Match: config.RateLimitMatch{Kind: "automation"}, RPS: 1, Burst: 2},
			},
			budgets:   []config.Budget{{Prefix: "member-remove:", Limit: 1, Per: time.Hour}, budgets[1]},
			wantHuman: 1, wantRule: "rate_limits[0]", wantRobot: 2,
			wantBudgets: map[string]float64{"member-remove:etcd": 1, "delete:/x": 4},
		},
		{
			name:      "a changed match is a new rule with full buckets; removed budgets go",
			rules:     []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human", Method: "/etcdserverpb.*/*"}, RPS: 1, Burst: 4}, base[1]},
			budgets:   budgets[1:],
			wantHuman: 4, wantRule: "rate_limits[0]", wantRobot: 3,
			wantBudgets: map[string]float64{"delete:/x": 4},
		},
		{
			name:      "removing every rule",
			wantHuman: -1, wantRobot: -1,
			wantBudgets: map[string]float64{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, base, budgets, ratelimit.Options{})
			for range 3 {
				l.Allow(alice, put, false, t0)
			}
			l.Allow(deployer, put, false, t0)
			l.Take([]policy.Budget{{Key: "member-remove:etcd", Cost: 3}, {Key: "delete:/x", Cost: 1}}, t0)
			if err := l.Update(tc.rules, tc.budgets, t0); err != nil {
				t.Fatalf("Update: %v", err)
			}
			got := map[string]ratelimit.Bucket{}
			for _, b := range l.Status("", t0) {
				if b.Kind == "rate" {
					got[b.Key] = b
				}
			}
			check := func(who identity.Principal, want float64, rule string) {
				b, ok := got[who.ID]
				switch {
				case want < 0 && ok:
					t.Errorf("%s still has bucket %+v, want none", who.ID, b)
				case want >= 0 && !ok:
					t.Errorf("%s has no bucket after Update, want %v tokens", who.ID, want)
				case ok && (b.Tokens != want || (rule != "" && b.Rule != rule)):
					t.Errorf("%s bucket = %v tokens (%s), want %v (%s)", who.ID, b.Tokens, b.Rule, want, rule)
				}
			}
			if tc.wantHuman == 4 {
				// a new rule: alice's old bucket went with the old rule
				check(alice, -1, "")
				if ok, _, _ := l.Allow(alice, put, false, t0); !ok {
					t.Errorf("alice refused under a new rule, want a full bucket")
				}
			} else {
				check(alice, tc.wantHuman, tc.wantRule)
			}
			check(deployer, tc.wantRobot, "")
			if b := tokens(t, l, t0); fmt.Sprint(b) != fmt.Sprint(tc.wantBudgets) {
				t.Errorf("budget tokens after Update = %v, want %v", b, tc.wantBudgets)
			}
		})
	}
}

func TestUpdateRefillsAtTheOldRateUntilNow(t *testing.T) {
	l := newLimiter(t, humans, nil, ratelimit.Options{})
	l.Allow(alice, put, false, t0)
	l.Allow(alice, put, false, t0) // empty; refills at 1/s
	// Half a second at the old rate is half a token; from then on 10/s.
	if err := l.Update([]config.RateLimitRule{{Match: humans[0].Match, RPS: 10, Burst: 2}}, nil, t0.Add(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	st := l.Status(alice.ID, t0.Add(550*time.Millisecond))
	if len(st) != 1 || st[0].Tokens < 0.999 || st[0].Tokens > 1.001 {
		t.Errorf("Status(alice) 50ms after Update = %+v, want 1 token (0.5 at 1/s + 0.5 at 10/s)", st)
	}
}

func TestUpdateInvalidChangesNothing(t *testing.T) {
	l := newLimiter(t, humans, nil, ratelimit.Options{})
	l.Allow(alice, put, false, t0)
	l.Allow(alice, put, false, t0)
	bad := []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 100, Burst: 100}, {Match: config.RateLimitMatch{Principal: "["}, RPS: 1, Burst: 1}}
	if err := l.Update(bad, nil, t0); err == nil {
		t.Fatalf("Update(%+v) = nil, want an error", bad)
	}
	if ok, _, _ := l.Allow(alice, put, false, t0); ok {
		t.Errorf("alice allowed after a failed Update, want the old empty bucket to stay")
	}
}

// TestSharedBudgetOversubscribed: keys beyond the cap share a bucket, and one
// message may ask it for more than it holds; that is a wait, not a final refusal,
// and it spends nothing.
func TestSharedBudgetOversubscribed(t *testing.T) {
	l := newLimiter(t, nil, []config.Budget{{Prefix: "k:", Limit: 2, Per: time.Hour}}, ratelimit.Options{MaxBuckets: 1})
	if ok, _, _ := l.Take([]policy.Budget{{Key: "k:a", Cost: 1}}, t0); !ok {
		t.Fatal("Take(k:a) refused")
	}
	both := []policy.Budget{{Key: "k:b", Cost: 1.5}, {Key: "k:c", Cost: 1.5}}
	if ok, wait, key := l.Take(both, t0); ok || wait != time.Hour || key != "k:b" {
		t.Errorf("Take(%v) on the shared bucket = %v, %v, %q; want refused for a period (1h), naming k:b", both, ok, wait, key)
	}
	if ok, _, _ := l.Take([]policy.Budget{{Key: "k:d", Cost: 2}}, t0); !ok {
		t.Errorf("Take(k:d, 2) on the shared bucket refused: the refused Take spent from it")
	}
}
