package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
)

// wireAudit serves ztp.v1.Audit from the store and, with audit.signing_key,
// signs checkpoints of the chain head every audit.checkpoint_interval (when
// it moved). The store itself signs the final head when it closes at
// shutdown, after the "stopped" record, so the last checkpoint covers the
// whole run. With audit.checkpoint_dir or audit.checkpoint_command every
// checkpoint leaves the host as it is signed, the final one included.
func (s *Server) wireAudit(context.Context) error {
	switch {
	case s.cfg.Audit.SigningKey == "":
		s.log.Warn("audit.signing_key is not set: no checkpoints are signed, so the audit log proves only its own consistency; cutting its tail or rewriting it with recomputed hashes is not detectable")
	default:
		signer, err := audit.LoadSigner(s.cfg.Resolve(s.cfg.Audit.SigningKey))
		if err != nil {
			return fmt.Errorf("audit.signing_key: %w", err)
		}
		if err := s.wireCheckpointShipping(); err != nil {
			return err
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

// wireCheckpointShipping starts the shipper of audit.checkpoint_dir and
// audit.checkpoint_command. Deliveries are counted and failures logged;
// none blocks a caller. At shutdown the final checkpoint gets up to
// audit.checkpoint_command_timeout to leave.
func (s *Server) wireCheckpointShipping() error {
	dir, argv := s.cfg.Audit.CheckpointDir, s.cfg.Audit.CheckpointCommand
	if dir == "" && len(argv) == 0 {
		s.log.Warn("audit checkpoints are kept only in the audit file, which proves nothing against whoever can rewrite it: set audit.checkpoint_dir or audit.checkpoint_command to ship them off the host")
		return nil
	}
	shipped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ztp_audit_checkpoint_shipments_total",
		Help: "Deliveries of signed audit checkpoints by destination (dir, command) and result (ok, error, dropped).",
	}, []string{"destination", "result"})
	last := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ztp_audit_checkpoint_last_shipped_timestamp_seconds",
		Help: "When a signed audit checkpoint was last delivered, by destination.",
	}, []string{"destination"})
	if err := errors.Join(s.metrics.Registry.Register(shipped), s.metrics.Registry.Register(last)); err != nil {
		return err
	}
	sh, err := audit.NewShipper(audit.ShipperOptions{
		Dir:     s.cfg.Resolve(dir),
		Command: argv,
		Timeout: s.cfg.Audit.CheckpointCommandTimeout,
		OnResult: func(dest string, c audit.Checkpoint, err error) {
			switch {
			case err == nil:
				shipped.WithLabelValues(dest, "ok").Inc()
				last.WithLabelValues(dest).Set(float64(s.now().Unix()))
			case errors.Is(err, audit.ErrShipDropped):
				shipped.WithLabelValues(dest, "dropped").Inc()
				s.log.Error("audit checkpoint not shipped", "destination", dest, "size", c.Size, "err", err)
			default:
				shipped.WithLabelValues(dest, "error").Inc()
				s.log.Error("audit checkpoint shipping failed; retrying", "destination", dest, "size", c.Size, "err", err)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("audit.checkpoint_dir/checkpoint_command: %w", err)
	}
	s.store.OnCheckpoint(sh.Ship)
	final := s.cfg.Audit.CheckpointCommandTimeout
	s.closed = append(s.closed, func() {
		ctx, cancel := context.WithTimeout(context.Background(), final)
		defer cancel()
		sh.Close(ctx)
	})
	s.log.Info("shipping audit checkpoints", "dir", dir, "command", argv)
	return nil
}
