package proxy

import "context"

// wirePolicy sets up policy reloads (file watching, SIGHUP) from s.cfg.
func (s *Server) wirePolicy(ctx context.Context) error {
	return nil
}
