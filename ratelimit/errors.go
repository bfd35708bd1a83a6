package ratelimit

import "errors"

// ErrInvalidRule is returned by New and Update when a rate_limits rule or a
// budgets entry is malformed: a bad glob, an unknown kind, a non-positive rps,
// burst, limit or period, or an empty or duplicate budget prefix. The config
// package rejects all of these first; the Limiter checks again because it must
// never run with a rule it cannot apply.
var ErrInvalidRule = errors.New("ratelimit: invalid rule")
