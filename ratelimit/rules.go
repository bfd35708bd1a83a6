package ratelimit

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
)

// rateRule is a compiled rate_limits entry.
type rateRule struct {
	match  config.RateLimitMatch
	bypass bool
	bytes  bool // a response_bytes rule: a response costs its size, not one token
	c      *class
	// The literal text each glob starts with: most calls a rule does not apply
	// to are told apart by a prefix comparison, without running path.Match.
	principalLit, methodLit string
}

// literal returns the part of a path.Match pattern before its first special
// character.
func literal(glob string) string {
	if i := strings.IndexAny(glob, `*?[\`); i >= 0 {
		return glob[:i]
	}
	return glob
}

// matches reports whether the rule applies to p calling method. Empty fields
// match anything; principal and method are path.Match globs ('*' stays within a
// '/' segment), kind and group compare exactly.
func (r *rateRule) matches(p identity.Principal, method string) bool {
	m := &r.match
	if m.Kind != "" && m.Kind != p.Kind {
		return false
	}
	if m.Group != "" && !slices.Contains(p.Groups, m.Group) {
		return false
	}
	// Globs were checked when the rule was compiled, so the errors are nil.
	if m.Principal != "" {
		if !strings.HasPrefix(p.ID, r.principalLit) {
			return false
		}
		if ok, _ := path.Match(m.Principal, p.ID); !ok {
			return false
		}
	}
	if m.Method != "" {
		if !strings.HasPrefix(method, r.methodLit) {
			return false
		}
		if ok, _ := path.Match(m.Method, method); !ok {
			return false
		}
	}
	return true
}

// budgetRule is a compiled budgets entry.
type budgetRule struct {
	prefix string
	limit  float64
	per    time.Duration
	c      *class
}

// rules is one immutable generation of compiled configuration.
type rules struct {
	rate    []*rateRule   // unit messages, config order: the first match wins
	volume  []*rateRule   // units response_*, config order: the first match wins
	budgets []*budgetRule // longest prefix first: the most specific wins
}

// match returns the first rate rule that applies, or nil.
func (rs *rules) match(p identity.Principal, method string) *rateRule {
	return first(rs.rate, p, method)
}

func first(rate []*rateRule, p identity.Principal, method string) *rateRule {
	for _, r := range rate {
		if r.matches(p, method) {
			return r
		}
	}
	return nil
}

// budget returns the rule governing key, or nil when no prefix covers it.
func (rs *rules) budget(key string) *budgetRule {
	for _, b := range rs.budgets {
		if strings.HasPrefix(key, b.prefix) {
			return b
		}
	}
	return nil
}

// compile checks and compiles the configuration. A rule whose match equals one
// in prev (a rate rule) or whose prefix does (a budget) reuses prev's class, so
// its buckets carry over; the new parameters are returned in params for the
// caller to apply once it holds the locks.
func compile(rateCfg []config.RateLimitRule, budgetCfg []config.Budget, prev *rules, now time.Time) (*rules, map[*class]params, error) {
	// A rate rule is the same rule across a reload when its match and unit are.
	type rateID struct {
		match config.RateLimitMatch
		unit  string
	}
	oldRate := map[rateID]*class{}
	oldBudget := map[string]*class{}
	if prev != nil {
		for _, r := range append(slices.Clip(prev.rate), prev.volume...) {
			id := rateID{r.match, r.c.unit}
			if _, dup := oldRate[id]; !dup {
				oldRate[id] = r.c
			}
		}
		for _, b := range prev.budgets {
			oldBudget[b.prefix] = b.c
		}
	}
	set := map[*class]params{}
	reuse := func(c *class, name, unit string, rate, burst, scale float64) *class {
		p := params{rule: name, rate: rate, burst: burst, scale: scale}
		if c == nil {
			c = &class{unit: unit}
			c.apply(p)
			c.shared.key = bucketKey{c: c}
			c.shared.init(c, c.burstN, now)
		}
		set[c] = p
		return c
	}

	rs := &rules{}
	for i, r := range rateCfg {
		name := fmt.Sprintf("rate_limits[%d]", i)
		for _, g := range []struct{ field, glob string }{{"principal", r.Match.Principal}, {"method", r.Match.Method}} {
			if _, err := path.Match(g.glob, ""); err != nil {
				return nil, nil, fmt.Errorf("%w: %s.match.%s %q: %w", ErrInvalidRule, name, g.field, g.glob, err)
			}
		}
		if r.Match.Kind != "" && r.Match.Kind != identity.KindAutomation && r.Match.Kind != identity.KindHuman {
			return nil, nil, fmt.Errorf("%w: %s.match.kind must be %s or %s, got %q", ErrInvalidRule, name, identity.KindAutomation, identity.KindHuman, r.Match.Kind)
		}
		if !(r.RPS > 0) || r.Burst < 1 {
			return nil, nil, fmt.Errorf("%w: %s: rps must be > 0 and burst >= 1, got %v and %d", ErrInvalidRule, name, r.RPS, r.Burst)
		}
		unit := r.Unit
		switch unit {
		case "":
			unit = config.UnitMessages
		case config.UnitMessages, config.UnitResponseMessages, config.UnitResponseBytes:
		default:
			return nil, nil, fmt.Errorf("%w: %s.unit %q is not a unit", ErrInvalidRule, name, r.Unit)
		}
		id := rateID{r.Match, unit}
		c := oldRate[id]
		delete(oldRate, id) // a duplicate match (dead rule) gets a class of its own
		rr := &rateRule{
			match: r.Match, bypass: r.BreakglassBypass, bytes: unit == config.UnitResponseBytes,
			c:            reuse(c, name, unit, r.RPS, float64(r.Burst), rateScale),
			principalLit: literal(r.Match.Principal), methodLit: literal(r.Match.Method),
		}
		if unit == config.UnitMessages {
			rs.rate = append(rs.rate, rr)
		} else {
			rs.volume = append(rs.volume, rr)
		}
	}
	seen := map[string]bool{}
	for i, b := range budgetCfg {
		name := fmt.Sprintf("budgets[%d]", i)
		if b.Prefix == "" || seen[b.Prefix] {
			return nil, nil, fmt.Errorf("%w: %s.prefix %q: empty or duplicate", ErrInvalidRule, name, b.Prefix)
		}
		seen[b.Prefix] = true
		if !(b.Limit > 0) || b.Per <= 0 {
			return nil, nil, fmt.Errorf("%w: %s: limit must be > 0 and per a positive duration, got %v and %v", ErrInvalidRule, name, b.Limit, b.Per)
		}
		c := reuse(oldBudget[b.Prefix], name, "", b.Limit/b.Per.Seconds(), b.Limit, budgetScale)
		rs.budgets = append(rs.budgets, &budgetRule{prefix: b.Prefix, limit: b.Limit, per: b.Per, c: c})
	}
	slices.SortStableFunc(rs.budgets, func(a, b *budgetRule) int { return cmp.Compare(len(b.prefix), len(a.prefix)) })
	return rs, set, nil
}
