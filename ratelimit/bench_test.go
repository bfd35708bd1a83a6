package ratelimit_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/ratelimit"
)

// benchRules are the README's example rules plus two more in front, so a
// human call tries four rules (two globs) before it matches.
var benchRules = []config.RateLimitRule{
	{Match: config.RateLimitMatch{Principal: "spiffe://example.org/ns/batch/*"}, RPS: 1, Burst: 1},
	{Match: config.RateLimitMatch{Group: "sre-leads", Method: "/etcdserverpb.Maintenance/*"}, RPS: 1, Burst: 1},
	{Match: config.RateLimitMatch{Kind: "automation", Method: "/etcdserverpb.KV/*"}, RPS: 50, Burst: 100},
	{Match: config.RateLimitMatch{Kind: "human"}, RPS: 5, Burst: 10},
}

// BenchmarkAllow is the common case: a known principal with tokens to spare.
func BenchmarkAllow(b *testing.B) {
	for _, bc := range []struct {
		name   string
		p      identity.Principal
		method string
	}{
		{"automation-3rd-rule", deployer, put},
		{"human-4th-rule", alice, put},
		{"no-rule-matches", observer, watch},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := newLimiter(b, benchRules, nil, ratelimit.Options{})
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				// A second per call keeps the bucket from running dry at any b.N.
				now = now.Add(time.Second)
				if ok, _, _ := l.Allow(bc.p, bc.method, false, now); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}

// BenchmarkAllowParallel: many callers at once, each a principal of its own.
func BenchmarkAllowParallel(b *testing.B) {
	l := newLimiter(b, benchRules, nil, ratelimit.Options{})
	b.ReportAllocs()
	var id int64
	var mu = make(chan struct{}, 1)
	b.RunParallel(func(pb *testing.PB) {
		mu <- struct{}{}
		id++
		p := identity.Principal{ID: "spiffe://example.org/user/u" + strconv.FormatInt(id, 10), Kind: "human"}
		<-mu
		now := t0
		for pb.Next() {
			now = now.Add(time.Second)
			l.Allow(p, put, false, now)
		}
	})
}

// BenchmarkAllowNewPrincipal: each call from a principal never seen before, at
// the cap, so every call makes room (the flood case; allocates the new bucket).
func BenchmarkAllowNewPrincipal(b *testing.B) {
	l := newLimiter(b, benchRules, nil, ratelimit.Options{MaxBuckets: 10_000})
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "spiffe://example.org/user/u" + strconv.Itoa(i)
	}
	p := identity.Principal{Kind: "human"}
	now := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.ID = ids[i%len(ids)]
		i++
		now = now.Add(time.Second)
		l.Allow(p, put, false, now)
	}
}

// BenchmarkTake: the budgets one message draws on, with tokens to spare.
func BenchmarkTake(b *testing.B) {
	budgets := []config.Budget{
		{Prefix: "member-remove:", Limit: 5, Per: time.Hour},
		{Prefix: "delete:", Limit: 1e9, Per: time.Second},
	}
	for _, bc := range []struct {
		name string
		take []policy.Budget
	}{
		{"one-key", []policy.Budget{{Key: "delete:/config/", Cost: 1}}},
		{"three-keys", []policy.Budget{{Key: "delete:/a", Cost: 1}, {Key: "delete:/b", Cost: 1}, {Key: "delete:/c", Cost: 0.5}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := newLimiter(b, nil, budgets, ratelimit.Options{})
			now := t0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(time.Second)
				if ok, _, _ := l.Take(bc.take, now); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}
