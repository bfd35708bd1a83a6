package ratelimit

import (
	"cmp"
	"context"
	"slices"
	"time"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
)

// MaxStatusBuckets caps one Status reply: a table may track 100,000 buckets, more
// than a gRPC message should carry or a person can read. The most depleted
// buckets are the ones chosen.
const MaxStatusBuckets = 1000

// Service serves ztp.v1.RateLimit from a Limiter. The proxy authenticates,
// authorizes (every authenticated principal may read) and audits the calls
// before they reach it.
type Service struct {
	ztpv1.UnimplementedRateLimitServer
	l   *Limiter
	now func() time.Time
}

// NewService returns the RateLimit service for l, reading the time from now.
func NewService(l *Limiter, now func() time.Time) *Service {
	return &Service{l: l, now: now}
}

// Status returns the tracked buckets (of one principal when the request names
// one), at most req.limit or MaxStatusBuckets of them: the most depleted first
// chosen, then sorted by kind, rule and key. total counts all that matched.
func (s *Service) Status(_ context.Context, req *ztpv1.RateLimitStatusRequest) (*ztpv1.RateLimitStatusResponse, error) {
	all := s.l.Status(req.GetPrincipal(), s.now())
	limit := int(req.GetLimit())
	if limit <= 0 || limit > MaxStatusBuckets {
		limit = MaxStatusBuckets
	}
	shown := all
	if len(all) > limit {
		shown = slices.Clone(all)
		slices.SortStableFunc(shown, func(a, b Bucket) int { return cmp.Compare(a.Tokens/a.Burst, b.Tokens/b.Burst) })
		shown = shown[:limit]
		slices.SortFunc(shown, func(a, b Bucket) int {
			return cmp.Or(cmp.Compare(a.Kind, b.Kind), compareRule(a.Rule, b.Rule), cmp.Compare(a.Key, b.Key))
		})
	}
	resp := &ztpv1.RateLimitStatusResponse{Total: uint64(len(all)), Buckets: make([]*ztpv1.Bucket, len(shown))}
	for i, b := range shown {
		resp.Buckets[i] = &ztpv1.Bucket{Kind: b.Kind, Key: b.Key, Rule: b.Rule, Tokens: b.Tokens, Burst: b.Burst, PerSecond: b.PerSecond}
	}
	return resp, nil
}
