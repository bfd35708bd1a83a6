package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/metrics"
)

// readinessInterval is how often readiness is probed in the background: an
// unwritable audit log shows on /readyz within this long, even without traffic.
const readinessInterval = 2 * time.Second

// startOps starts readiness probing and, when metrics.listen is set, the HTTP
// endpoint for /metrics, /healthz and /readyz.
func (s *Server) startOps(cfg *config.Config) error {
	s.pprof = cfg.Metrics.Pprof
	s.readiness = metrics.NewReadiness(readinessInterval, map[string]metrics.Check{
		"audit":     s.store.Ping,
		"policy":    s.policyLoaded,
		"upstreams": s.upstreamsReachable,
	})
	s.readiness.OnProbe = s.setHealth
	if cfg.Audit.MinFreeBytes > 0 {
		disk := newDiskWatch(cfg.Resolve(cfg.Audit.Path), cfg.Audit.MinFreeBytes, s.opts.DiskFree, s.metrics, s.log)
		s.readiness.Warnings = map[string]metrics.Check{"audit_disk": disk.check}
	}
	s.readiness.Start()
	s.metrics.GaugeFunc("ztp_ready", "1 while /readyz reports ready (audit writable, policy loaded, upstreams reachable).", func() float64 {
		if ok, _ := s.readiness.Ready(); ok {
			return 1
		}
		return 0
	})
	if cfg.Metrics.Listen == "" {
		return nil
	}
	lis, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	s.httpSrv = &http.Server{Handler: s.MetricsHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	s.log.Info("metrics endpoint", "listen", lis.Addr().String())
	return nil
}

func (s *Server) stopOps() {
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.httpSrv.Shutdown(ctx)
		cancel()
	}
	if s.readiness != nil {
		s.readiness.Stop()
		s.readiness = nil
	}
	if s.health != nil {
		s.health.Shutdown()
	}
}

// Ready reports readiness as /readyz does (the last background probe).
func (s *Server) Ready() (bool, map[string]string) {
	ok, checks := s.readiness.Ready()
	return ok, checks
}

// Metrics exposes the server's collectors (benchmarks read its histograms).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// MetricsHandler serves /metrics, /healthz and /readyz (also without metrics.listen).
func (s *Server) MetricsHandler() http.Handler {
	h := s.metrics.Handler(s.readiness)
	if !s.pprof {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// setHealth mirrors readiness into the gRPC health service.
func (s *Server) setHealth(ready bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ready {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", st)
}

func (s *Server) policyLoaded(context.Context) error {
	if s.pipeline == nil || s.pipeline.active() == nil {
		return errors.New("no policy loaded")
	}
	return nil
}

// upstreamsReachable fails while any upstream connection is in transient failure.
// Idle connections are asked to connect, so a backend that went away is noticed
// even when no call used it lately.
func (s *Server) upstreamsReachable(context.Context) error {
	var errs []error
	for _, u := range s.upstreams {
		switch st := u.conn.GetState(); st {
		case connectivity.Idle:
			u.conn.Connect()
		case connectivity.TransientFailure, connectivity.Shutdown:
			errs = append(errs, fmt.Errorf("upstream %s (%s): %s", u.name, u.conn.Target(), st))
		}
	}
	return errors.Join(errs...)
}
