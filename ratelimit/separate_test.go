package ratelimit_test

import (
	"strings"
	"testing"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/ratelimit"
)

// TestSeparateBuckets: a method with a bucket of its own is limited by the
// same rule, but a principal's other calls cannot exhaust it, nor it theirs.
func TestSeparateBuckets(t *testing.T) {
	const revoke = "/ztp.v1.BreakGlass/RevokeGrant"
	rules := []config.RateLimitRule{{Match: config.RateLimitMatch{Kind: "human"}, RPS: 1, Burst: 2}}
	l := newLimiter(t, rules, nil, ratelimit.Options{Separate: func(m string) bool { return m == revoke }})

	for range 2 {
		if ok, _, _ := l.Allow(alice, rng, false, t0); !ok {
			t.Fatal("Range within the burst refused")
		}
	}
	if ok, _, _ := l.Allow(alice, rng, false, t0); ok {
		t.Fatal("third Range in the same instant allowed")
	}
	for i := range 2 {
		if ok, _, b := l.Allow(alice, revoke, false, t0); !ok {
			t.Fatalf("RevokeGrant %d after the Range burst refused (%s); want its own bucket", i+1, b)
		}
	}
	ok, wait, bucket := l.Allow(alice, revoke, false, t0)
	if ok || wait <= 0 || bucket != "rate_limits[0] for "+alice.ID+" ("+revoke+")" {
		t.Errorf("third RevokeGrant = %v, %v, %q; want refused by its own bucket of rate_limits[0]", ok, wait, bucket)
	}
	if ok, _, _ := l.Allow(bob, revoke, false, t0); !ok {
		t.Error("bob's RevokeGrant refused after alice's; want a bucket per principal")
	}
	var keys []string
	for _, b := range l.Status(alice.ID, t0) {
		keys = append(keys, b.Key)
	}
	if got := strings.Join(keys, " | "); got != alice.ID+" | "+alice.ID+" ("+revoke+")" {
		t.Errorf("Status(alice) keys = %s; want her bucket and her RevokeGrant bucket", got)
	}
}
