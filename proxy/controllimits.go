package proxy

import (
	"context"
	"strings"
)

// Control-API calls are rate-limited by the same rate_limits rules as proxied
// calls: the first rule whose principal, kind, group and method glob match
// (e.g. method "/ztp.v1.BreakGlass/*") gives the caller its bucket, one token
// per call. A break-glass grant never lifts a limit here (grants admit proxied
// calls only, whatever their scope says).
//
// Some calls must never be starved by the caller's other traffic: ending a
// grant early, and health checks (a client that finds its health checks
// refused takes the proxy out of rotation). They are limited by the rule that
// matches them too, but each draws on a bucket of its own per principal and
// method (ratelimit.Options.Separate): a principal that spent its tokens on
// reads can still revoke, and flooding revocations spends only their bucket.

// unstarvable names the control methods with rate-limit buckets of their own.
func unstarvable(method string) bool {
	return method == "/ztp.v1.BreakGlass/RevokeGrant" || strings.HasPrefix(method, healthPrefix)
}

// controlRateLimit takes c's token; over the limit it audits the refusal
// (decision "ratelimited") and returns the RESOURCE_EXHAUSTED status with
// the retry pushback, as for a proxied message.
func (p *Pipeline) controlRateLimit(ctx context.Context, c *call) error {
	if p.limiter == nil {
		return nil
	}
	ok, wait, bucket := p.limiter.Allow(c.principal, c.method, false, p.now())
	if ok {
		return nil
	}
	return p.ratelimited(ctx, c, p.record(c, "request"), "rate limit "+bucket, wait)
}

// labels are the upstream and method labels of c's metrics. Control-API
// calls are upstream "ztp", labelled by method name: only the methods the
// control API serves get past authorization, so the set is fixed.
func (c *call) labels() (upstream, method string) {
	if c.upstream == nil {
		return "ztp", c.method
	}
	return c.upstream.name, c.methodLabel()
}
