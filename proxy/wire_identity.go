package proxy

import (
	"context"
	"fmt"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/identity"
)

// authenticator builds the call authenticator from s.cfg: client certificates
// always, and JWT bearer tokens when identity.jwt is set. On reload the JWKS
// file is read again (key rotation); other identity.jwt changes need a
// restart.
func (s *Server) authenticator(c *identity.Classifier) (Authenticator, error) {
	j := s.cfg.Identity.JWT
	if j == nil {
		return identity.NewAuthenticator(c, identity.WithClock(s.now)), nil
	}
	v, err := identity.NewJWTVerifier(identity.JWTConfig{
		Issuer:         j.Issuer,
		Audience:       j.Audience,
		JWKSFile:       s.cfg.Resolve(j.JWKSFile),
		PrincipalClaim: j.PrincipalClaim,
		Leeway:         j.Leeway,
		Now:            s.now,
	})
	if err != nil {
		return nil, fmt.Errorf("identity.jwt.jwks_file: %w", err)
	}
	s.reloaders = append(s.reloaders, func(_ context.Context, cfg *config.Config) error {
		if cfg.Identity.JWT == nil {
			s.log.Warn("identity.jwt removed from the config; bearer tokens stay accepted until restart")
			return nil
		}
		if err := v.ReloadKeys(cfg.Resolve(cfg.Identity.JWT.JWKSFile)); err != nil {
			return fmt.Errorf("identity.jwt.jwks_file: %w", err)
		}
		return nil
	})
	return identity.NewAuthenticator(c, identity.WithJWT(v), identity.WithClock(s.now)), nil
}
