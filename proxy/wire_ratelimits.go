package proxy

import (
	"context"
	"fmt"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/ratelimit"
)

// wireRateLimits connects rate limits and change budgets to the pipeline, serves
// ztp.v1.RateLimit and applies rate_limits and budgets on reload.
//
// The limiter is installed even when neither key is configured, for two reasons:
// a reload may add rules, and the pipeline's fields cannot change under running
// calls; and a policy naming data.ztp.budgets while no budget is configured must
// be refused (fail closed), not waved through. With no rules Allow admits every
// call after one failed match over an empty list.
func (s *Server) wireRateLimits(ctx context.Context) error {
	l, err := ratelimit.New(s.cfg.RateLimits, s.cfg.Budgets, s.now(), ratelimit.Options{Separate: unstarvable})
	if err != nil {
		return fmt.Errorf("rate_limits: %w", err)
	}
	s.pipeline.limiter = l
	s.pipeline.budgets = l
	s.pipeline.volume = l
	ztpv1.RegisterRateLimitServer(s.grpc, ratelimit.NewService(l, s.now))
	s.reloaders = append(s.reloaders, func(_ context.Context, cfg *config.Config) error {
		if err := l.Update(cfg.RateLimits, cfg.Budgets, s.now()); err != nil {
			return fmt.Errorf("rate_limits: %w", err)
		}
		return nil
	})
	s.log.Info("rate limits", "config", l.String())
	return nil
}
