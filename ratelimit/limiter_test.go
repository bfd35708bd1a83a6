package ratelimit_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/ratelimit"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

var (
	deployer = identity.Principal{ID: "spiffe://example.org/ns/prod/sa/deployer", Kind: "automation", Groups: []string{"deployers"}}
	observer = identity.Principal{ID: "spiffe://example.org/ns/prod/sa/observer", Kind: "automation", Groups: []string{"observers"}}
	alice    = identity.Principal{ID: "spiffe://example.org/user/alice", Kind: "human", Groups: []string{"sre"}}
	bob      = identity.Principal{ID: "spiffe://example.org/user/bob", Kind: "human", Groups: []string{"sre"}}
	lead     = identity.Principal{ID: "spiffe://example.org/lead/carol", Kind: "human", Groups: []string{"sre", "sre-leads"}}
)

const (
	put   = "/etcdserverpb.KV/Put"
	rng   = "/etcdserverpb.KV/Range"
	watch = "/etcdserverpb.Watch/Watch"
)

func newLimiter(t testing.TB, rules []config.RateLimitRule, budgets []config.Budget, o ratelimit.Options) *ratelimit.Limiter {
	t.Helper()
	l, err := ratelimit.New(rules, budgets, t0, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// ruleOf returns the rule that limited p's call to method: the rule named by the
// bucket Status shows after one call ("" when no rule applies).
func ruleOf(t *testing.T, rules []config.RateLimitRule, p identity.Principal, method string) string {
	t.Helper()
	l := newLimiter(t, rules, nil, ratelimit.Options{})
	if ok, _, _ := l.Allow(p, method, false, t0); !ok {
		t.Fatalf("first Allow(%s, %s) refused", p.ID, method)
	}
	st := l.Status(p.ID, t0)
	switch len(st) {
	case 0:
		return ""
	case 1:
		return st[0].Rule
	}
	t.Fatalf("Status(%s) = %+v, want at most one bucket", p.ID, st)
	return ""
}

func TestMatchOrder(t *testing.T) {
	rules := []config.RateLimitRule{
		{Match: config.RateLimitMatch{Principal: "spiffe://example.org/user/alice"}, RPS: 1, Burst: 1},
		{Match: config.RateLimitMatch{Kind: "automation", Method: "/etcdserverpb.KV/*"}, RPS: 50, Burst: 100},
		{Match: config.RateLimitMatch{Group: "sre-leads"}, RPS: 2, Burst: 4},
		{Match: config.RateLimitMatch{Kind: "human"}, RPS: 5, Burst: 10},
		{Match: config.RateLimitMatch{Kind: "automation", Group: "deployers"}, RPS: 10, Burst: 10},
	}
	tests := []struct {
		name   string
		p      identity.Principal
		method string
		want   string
	}{
		{"principal glob beats the kind rule below it", alice, put, "rate_limits[0]"},
		{"kind and method glob", deployer, put, "rate_limits[1]"},
		{"method glob stays within its service", deployer, watch, "rate_limits[4]"},
		{"group", lead, rng, "rate_limits[2]"},
		{"kind", bob, watch, "rate_limits[3]"},
		{"kind and group both required", observer, watch, ""},
		{"no rule matches: not limited", identity.Principal{ID: "cn:x", Kind: "automation"}, "/x.Y/Z", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ruleOf(t, rules, tc.p, tc.method); got != tc.want {
				t.Errorf("rule for %s calling %s = %q, want %q", tc.p.ID, tc.method, got, tc.want)
			}
		})
	}
}

func TestBurstAndRefill(t *testing.T) {
	l := newLimiter(t, []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 2, Burst: 3}}, nil, ratelimit.Options{})
	steps := []struct {
		name     string
		at       time.Duration // since t0
		wantOK   bool
		wantWait time.Duration
	}{
		{"burst 1", 0, true, 0},
		{"burst 2", 0, true, 0},
		{"burst 3", 0, true, 0},
		{"empty: a token is due in 1/rps", 0, false, 500 * time.Millisecond},
		{"refused calls take nothing", 0, false, 500 * time.Millisecond},
		{"almost refilled", 499 * time.Millisecond, false, time.Millisecond},
		{"one token refilled", 500 * time.Millisecond, true, 0},
		{"and spent", 500 * time.Millisecond, false, 500 * time.Millisecond},
		{"a long pause refills only up to the burst: 1", time.Hour, true, 0},
		{"2", time.Hour, true, 0},
		{"3", time.Hour, true, 0},
		{"4 is refused", time.Hour, false, 500 * time.Millisecond},
		{"a clock going backwards refills nothing", 30 * time.Minute, false, 500 * time.Millisecond},
		{"half a token refilled", time.Hour + 250*time.Millisecond, false, 250 * time.Millisecond},
	}
	for _, s := range steps {
		ok, wait, bucket := l.Allow(alice, put, false, t0.Add(s.at))
		if ok != s.wantOK || wait != s.wantWait {
			t.Fatalf("%s: Allow(alice, t0+%v) = %v, %v, %q; want %v, %v", s.name, s.at, ok, wait, bucket, s.wantOK, s.wantWait)
		}
		if want := "rate_limits[0] for " + alice.ID; !ok && bucket != want {
			t.Fatalf("%s: bucket = %q, want %q", s.name, bucket, want)
		}
	}
}

func TestBucketsPerPrincipalAndRule(t *testing.T) {
	l := newLimiter(t, []config.RateLimitRule{
		{Match: config.RateLimitMatch{Method: "/etcdserverpb.KV/Put"}, RPS: 1, Burst: 1},
		{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 1},
	}, nil, ratelimit.Options{})
	calls := []struct {
		p      identity.Principal
		method string
		want   bool
	}{
		{alice, put, true},
		{alice, put, false}, // alice's Put bucket is empty
		{bob, put, true},    // bob has his own
		{alice, rng, true},  // another rule: another bucket
		{alice, watch, false},
	}
	for i, c := range calls {
		if ok, _, _ := l.Allow(c.p, c.method, false, t0); ok != c.want {
			t.Errorf("call %d: Allow(%s, %s) = %v, want %v", i, c.p.ID, c.method, ok, c.want)
		}
	}
}

func TestBreakglass(t *testing.T) {
	tests := []struct {
		name   string
		bypass bool
		grant  bool
		want   []bool
	}{
		{"no grant", false, false, []bool{true, false, false}},
		{"grant without bypass is limited", false, true, []bool{true, false, false}},
		{"grant with bypass is not", true, true, []bool{true, true, true}},
		{"bypass rule without grant is limited", true, false, []bool{true, false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 1, BreakglassBypass: tc.bypass}}, nil, ratelimit.Options{})
			for i, want := range tc.want {
				if ok, _, _ := l.Allow(alice, put, tc.grant, t0); ok != want {
					t.Errorf("call %d: Allow(breakglass=%v) = %v, want %v", i, tc.grant, ok, want)
				}
			}
		})
	}
	// Calls that bypass take no token: once the grant ends the bucket is as full as before.
	l := newLimiter(t, []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 1, BreakglassBypass: true}}, nil, ratelimit.Options{})
	for range 5 {
		l.Allow(alice, put, true, t0)
	}
	if ok, _, _ := l.Allow(alice, put, false, t0); !ok {
		t.Errorf("Allow without grant after bypassed calls = false, want true (bypassed calls take no tokens)")
	}
}

func TestConcurrentCallersShareOneBucket(t *testing.T) {
	const burst = 50
	l := newLimiter(t, []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: burst}}, nil, ratelimit.Options{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 { // as from 8 connections of the same principal
		wg.Go(func() {
			for range 100 {
				if ok, _, _ := l.Allow(alice, put, false, t0); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != burst {
		t.Errorf("800 concurrent calls at one instant allowed %d, want the burst %d", allowed, burst)
	}
}

var budgetCfg = []config.Budget{
	{Prefix: "member-remove:", Limit: 5, Per: time.Hour},
	{Prefix: "delete:", Limit: 2, Per: time.Minute},
	{Prefix: "delete:/registry/", Limit: 1, Per: time.Hour},
}

func tokens(t *testing.T, l *ratelimit.Limiter, at time.Time) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, b := range l.Status("", at) {
		if b.Kind == "budget" {
			out[b.Key] = b.Tokens
		}
	}
	return out
}

func TestTake(t *testing.T) {
	type take struct {
		budgets  []policy.Budget
		wantOK   bool
		wantWait time.Duration
		wantKey  string // substring
	}
	b := func(kv ...any) []policy.Budget {
		var out []policy.Budget
		for i := 0; i < len(kv); i += 2 {
			out = append(out, policy.Budget{Key: kv[i].(string), Cost: kv[i+1].(float64)})
		}
		return out
	}
	tests := []struct {
		name  string
		takes []take
		want  map[string]float64 // tokens left
	}{
		{
			name:  "nothing named: nothing taken",
			takes: []take{{budgets: nil, wantOK: true}},
			want:  map[string]float64{},
		},
		{
			name: "spend the limit, then wait for one unit",
			takes: []take{
				{b("member-remove:etcd", 3.0), true, 0, ""},
				{b("member-remove:etcd", 2.0), true, 0, ""},
				{b("member-remove:etcd", 1.0), false, 12 * time.Minute, "member-remove:etcd"},
			},
			want: map[string]float64{"member-remove:etcd": 0},
		},
		{
			name: "keys have their own buckets",
			takes: []take{
				{b("member-remove:a", 5.0), true, 0, ""},
				{b("member-remove:b", 5.0), true, 0, ""},
			},
			want: map[string]float64{"member-remove:a": 0, "member-remove:b": 0},
		},
		{
			name: "all or nothing: one short key spends nothing",
			takes: []take{
				{b("delete:/a", 2.0), true, 0, ""},
				{b("delete:/a", 1.0, "member-remove:etcd", 1.0), false, 30 * time.Second, "delete:/a"},
			},
			want: map[string]float64{"delete:/a": 0, "member-remove:etcd": 5},
		},
		{
			name: "the longest wait is reported",
			takes: []take{
				{b("delete:/a", 2.0, "member-remove:etcd", 5.0), true, 0, ""},
				{b("delete:/a", 1.0, "member-remove:etcd", 1.0), false, 12 * time.Minute, "member-remove:etcd"},
			},
			want: map[string]float64{"delete:/a": 0, "member-remove:etcd": 0},
		},
		{
			name: "repeated keys are summed",
			takes: []take{
				{b("delete:/a", 1.0), true, 0, ""},
				{b("delete:/a", 0.5, "delete:/a", 1.0), false, 15 * time.Second, "delete:/a"},
				{b("delete:/a", 0.25, "delete:/a", 0.75), true, 0, ""},
				{b("delete:/a", 1.5, "delete:/a", 1.5), false, ratelimit.NotRetryable, "cost 3 exceeds the budget's limit 2"},
			},
			want: map[string]float64{"delete:/a": 0},
		},
		{
			name: "fractional costs",
			takes: []take{
				{b("delete:/a", 0.25), true, 0, ""},
				{b("delete:/a", 0.5), true, 0, ""},
			},
			want: map[string]float64{"delete:/a": 1.25},
		},
		{
			name:  "cost zero takes nothing but needs a budget",
			takes: []take{{b("delete:/a", 0.0), true, 0, ""}, {b("unknown:x", 0.0), false, ratelimit.NotRetryable, "no budgets prefix"}},
			want:  map[string]float64{"delete:/a": 2},
		},
		{
			name: "the longest prefix wins",
			takes: []take{
				{b("delete:/registry/pods", 1.0), true, 0, ""},
				{b("delete:/registry/pods", 1.0), false, time.Hour, "delete:/registry/pods"},
			},
			want: map[string]float64{"delete:/registry/pods": 0},
		},
		{
			name: "a key no prefix covers is refused for good and spends nothing",
			takes: []take{
				{b("delete:/a", 1.0, "member-add:etcd", 1.0), false, ratelimit.NotRetryable, "member-add:etcd (no budgets prefix covers it)"},
			},
			want: map[string]float64{"delete:/a": 2},
		},
		{
			name: "a cost above the whole limit can never pass",
			takes: []take{
				{b("member-remove:etcd", 6.0), false, ratelimit.NotRetryable, "exceeds the budget's limit 5"},
				{b("member-remove:etcd", 3.0, "member-remove:etcd", 3.0), false, ratelimit.NotRetryable, "cost 6 exceeds the budget's limit 5"},
			},
			want: map[string]float64{"member-remove:etcd": 5},
		},
		{
			name: "a negative or non-finite cost is refused",
			takes: []take{
				{b("delete:/a", -1.0), false, ratelimit.NotRetryable, "not a finite number"},
				{b("delete:/a", math.NaN()), false, ratelimit.NotRetryable, "not a finite number"},
				{b("delete:/a", math.Inf(1)), false, ratelimit.NotRetryable, "not a finite number"},
			},
			want: map[string]float64{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, nil, budgetCfg, ratelimit.Options{})
			for i, tk := range tc.takes {
				ok, wait, k := l.Take(tk.budgets, t0)
				if ok != tk.wantOK || wait != tk.wantWait || !strings.Contains(k, tk.wantKey) {
					t.Errorf("take %d: Take(%v) = %v, %v, %q; want %v, %v, key containing %q", i, tk.budgets, ok, wait, k, tk.wantOK, tk.wantWait, tk.wantKey)
				}
			}
			got := tokens(t, l, t0)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("tokens left = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBudgetRefill(t *testing.T) {
	l := newLimiter(t, nil, budgetCfg, ratelimit.Options{})
	mr := []policy.Budget{{Key: "member-remove:etcd", Cost: 1}}
	for i := range 5 {
		if ok, _, _ := l.Take(mr, t0); !ok {
			t.Fatalf("removal %d refused, want 5 per hour allowed", i+1)
		}
	}
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{11 * time.Minute, false},
		{12 * time.Minute, true}, // 5 per hour: one unit every 12 minutes
		{13 * time.Minute, false},
		{24 * time.Minute, true},
		{10 * time.Hour, true},
	}
	for _, s := range steps {
		if ok, wait, _ := l.Take(mr, t0.Add(s.at)); ok != s.want {
			t.Errorf("Take at t0+%v = %v (wait %v), want %v", s.at, ok, wait, s.want)
		}
	}
	if got := tokens(t, l, t0.Add(10*time.Hour)); got["member-remove:etcd"] != 4 {
		t.Errorf("tokens after a long pause and one removal = %v, want 4 (refill stops at the limit)", got)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		rules   []config.RateLimitRule
		budgets []config.Budget
	}{
		{"bad principal glob", []config.RateLimitRule{{Match: config.RateLimitMatch{Principal: "spiffe://["}, RPS: 1, Burst: 1}}, nil},
		{"bad method glob", []config.RateLimitRule{{Match: config.RateLimitMatch{Method: "/a\\"}, RPS: 1, Burst: 1}}, nil},
		{"bad kind", []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "robot"}, RPS: 1, Burst: 1}}, nil},
		{"zero rps", []config.RateLimitRule{{RPS: 0, Burst: 1}}, nil},
		{"NaN rps", []config.RateLimitRule{{RPS: math.NaN(), Burst: 1}}, nil},
		{"zero burst", []config.RateLimitRule{{RPS: 1, Burst: 0}}, nil},
		{"empty prefix", nil, []config.Budget{{Prefix: "", Limit: 1, Per: time.Hour}}},
		{"duplicate prefix", nil, []config.Budget{{Prefix: "a:", Limit: 1, Per: time.Hour}, {Prefix: "a:", Limit: 2, Per: time.Hour}}},
		{"zero limit", nil, []config.Budget{{Prefix: "a:", Limit: 0, Per: time.Hour}}},
		{"zero period", nil, []config.Budget{{Prefix: "a:", Limit: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ratelimit.New(tc.rules, tc.budgets, t0, ratelimit.Options{}); !errors.Is(err, ratelimit.ErrInvalidRule) {
				t.Errorf("New(%+v, %+v) = %v, want ErrInvalidRule", tc.rules, tc.budgets, err)
			}
		})
	}
}

// TestBudgetGranularity: budgets count in milli-units (rate.Limiter takes whole
// tokens), so a cost is exact to 0.001 and a finer one is rounded up, never down.
func TestBudgetGranularity(t *testing.T) {
	tests := []struct {
		name     string
		limit    float64
		costs    []float64
		wantOK   []bool
		wantLeft float64
	}{
		{"decimal costs are exact", 1, []float64{0.001, 0.999}, []bool{true, true}, 0},
		// 2.007*1000 is 2007.0000000000002 in float64, 1.001*1000 is 1000.9999999999999.
		{"a cost a hair above its decimal is not rounded up", 2.007, []float64{2.007}, []bool{true}, 0},
		{"a limit a hair below its decimal is not rounded down", 1.001, []float64{1.001}, []bool{true}, 0},
		{"a cost finer than 0.001 costs 0.001", 1, []float64{0.0001, 0.0001}, []bool{true, true}, 0.998},
		{"rounding up never makes a cost free", 0.002, []float64{1e-9, 1e-9, 1e-9}, []bool{true, true, false}, 0},
		{"a limit finer than 0.001 is rounded down", 0.0019, []float64{0.001, 0.001}, []bool{true, false}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(t, nil, []config.Budget{{Prefix: "k:", Limit: tc.limit, Per: time.Hour}}, ratelimit.Options{})
			for i, c := range tc.costs {
				ok, wait, key := l.Take([]policy.Budget{{Key: "k:a", Cost: c}}, t0)
				if ok != tc.wantOK[i] {
					t.Fatalf("take %d: Take(cost %v) = %v, %v, %q; want ok %v", i, c, ok, wait, key, tc.wantOK[i])
				}
			}
			if got := tokens(t, l, t0)["k:a"]; math.Abs(got-tc.wantLeft) > 1e-12 {
				t.Errorf("tokens left = %v, want %v", got, tc.wantLeft)
			}
		})
	}
}

// TestClockBackwardsAfterATake: a call whose clock went backwards must not make
// the time it went back refill again later.
func TestClockBackwardsAfterATake(t *testing.T) {
	l := newLimiter(t, []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 2}}, nil, ratelimit.Options{})
	steps := []struct {
		name   string
		at     time.Duration
		wantOK bool
	}{
		{"burst 1 at t0+10s", 10 * time.Second, true},
		{"burst 2 from a clock 10s behind", 0, true},
		{"back at t0+10s: nothing refilled", 10 * time.Second, false},
		{"a second later: one token", 11 * time.Second, true},
		{"and no more", 11 * time.Second, false},
	}
	for _, s := range steps {
		if ok, wait, _ := l.Allow(alice, put, false, t0.Add(s.at)); ok != s.wantOK {
			t.Fatalf("%s: Allow at t0+%v = %v (wait %v), want %v", s.name, s.at, ok, wait, s.wantOK)
		}
	}
}
