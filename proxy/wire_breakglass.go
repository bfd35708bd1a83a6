package proxy

import "context"

// wireBreakglass connects the breakglass stage to the pipeline and registers its control-API
// service, from s.cfg.
func (s *Server) wireBreakglass(ctx context.Context) error {
	return nil
}
