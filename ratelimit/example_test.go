package ratelimit_test

import (
	"fmt"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/ratelimit"
)

// A human may send 5 messages per second with bursts of 10; the clock is the
// caller's, so a refill is a matter of passing a later time.
func ExampleLimiter_Allow() {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	l, err := ratelimit.New([]config.RateLimitRule{
		{Match: config.RateLimitMatch{Kind: "human"}, RPS: 5, Burst: 10},
	}, nil, start, ratelimit.Options{})
	if err != nil {
		panic(err)
	}
	alice := identity.Principal{ID: "spiffe://example.org/user/alice", Kind: "human"}
	for range 10 {
		l.Allow(alice, "/etcdserverpb.KV/Put", false, start)
	}
	fmt.Println(l.Allow(alice, "/etcdserverpb.KV/Put", false, start))
	fmt.Println(l.Allow(alice, "/etcdserverpb.KV/Put", false, start.Add(200*time.Millisecond)))
	// Output:
	// false 200ms rate_limits[0] for spiffe://example.org/user/alice
	// true 0s
}

// At most 5 member removals per hour per cluster: the policy names the key
// ("member-remove:" + cluster), the config gives the prefix its limit.
func ExampleLimiter_Take() {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	l, err := ratelimit.New(nil, []config.Budget{
		{Prefix: "member-remove:", Limit: 5, Per: time.Hour},
	}, start, ratelimit.Options{})
	if err != nil {
		panic(err)
	}
	remove := []policy.Budget{{Key: "member-remove:etcd-prod", Cost: 1}}
	for range 5 {
		l.Take(remove, start)
	}
	fmt.Println(l.Take(remove, start))
	fmt.Println(l.Take([]policy.Budget{{Key: "member-add:etcd-prod", Cost: 1}}, start))
	// Output:
	// false 12m0s member-remove:etcd-prod
	// false -1ms member-add:etcd-prod (no budgets prefix covers it)
}
