package proxy

import "github.com/ztp-dev/ztp/identity"

// authenticator builds the call authenticator from s.cfg.
func (s *Server) authenticator(c *identity.Classifier) (Authenticator, error) {
	return identity.NewAuthenticator(c), nil
}
