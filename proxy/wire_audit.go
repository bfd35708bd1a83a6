package proxy

import (
	"context"
	"fmt"
	"time"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
)

// wireAudit serves ztp.v1.Audit from the store and, with audit.signing_key,
// signs checkpoints of the chain head every audit.checkpoint_interval (when
// it moved). The store itself signs the final head when it closes at
// shutdown, after the "stopped" record, so the last checkpoint covers the
// whole run.
func (s *Server) wireAudit(context.Context) error {
	if s.cfg.Audit.SigningKey != "" {
		signer, err := audit.LoadSigner(s.cfg.Resolve(s.cfg.Audit.SigningKey))
		if err != nil {
			return fmt.Errorf("audit.signing_key: %w", err)
		}
		s.store.SignCheckpoints(signer)
		s.log.Info("signing audit checkpoints", "key", audit.VerifierKey(signer.Public()), "interval", s.cfg.Audit.CheckpointInterval)
		// Not New's ctx: it may end as soon as New returns.
		ctx, cancel := context.WithCancel(context.Background())
		ticker := time.NewTicker(s.cfg.Audit.CheckpointInterval)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.store.RunCheckpoints(ctx, ticker.C, func(err error) {
				s.log.Error("audit checkpoint not signed", "err", err)
			})
		}()
		s.stops = append(s.stops, func(context.Context) {
			cancel()
			ticker.Stop()
			<-done
		})
	}
	svc := audit.NewService(s.store)
	s.drains = append(s.drains, svc.StopFollowers)
	ztpv1.RegisterAuditServer(s.grpc, svc)
	return nil
}
