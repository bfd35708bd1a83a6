package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/metrics"
	"github.com/ztp-dev/ztp/policy"
)

// upstream is one configured backend connection.
type upstream struct {
	name     string
	conn     *grpc.ClientConn
	decoder  Decoder          // nil when neither descriptors nor reflection are configured
	protoset *decode.Protoset // nil unless descriptors are configured
	querier  *effectQuerier   // nil unless effect_queries are configured
}

// Options carries what a Server takes from its environment rather than the config file.
type Options struct {
	Logger *slog.Logger
	// Now is the clock for records and policy input (default time.Now).
	Now func() time.Time
	// AuditTimeout bounds one audit append (default 5s); past it the call is refused.
	AuditTimeout time.Duration
	// AfterFunc runs f once d has passed on the clock of Now, unless stop is
	// called first (default time.AfterFunc): it ends calls when their
	// credential expires and calls that send no first message in time. Tests
	// inject testclock.Clock.AfterFunc with its Now.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
	// SpanExporter, when set and the config has a tracing section, receives the
	// spans instead of the OTLP collector, synchronously as each span ends (tests).
	SpanExporter sdktrace.SpanExporter
	// DiskFree, when set, replaces statfs for the audit.min_free_bytes
	// watermark: the bytes available on the file system holding dir (tests).
	DiskFree func(dir string) (uint64, error)
}

// Server is a running ztp-proxy: the gRPC listener, the pipeline, the upstream
// connections and the audit store it owns.
type Server struct {
	grpc      *grpc.Server
	pipeline  *Pipeline
	upstreams []*upstream
	store     *audit.Store
	cfg       *config.Config // replaced by Reload; read only during New and by reloaders
	maxConns  int
	reloadMu  sync.Mutex
	opts      Options
	log       *slog.Logger
	now       func() time.Time

	// stops run at Shutdown after calls drained and before the audit log closes,
	// in reverse order of registration (checkpointers, notifiers, sweepers).
	stops []func(context.Context)
	// drains run when Shutdown begins, before calls drain: they end calls that
	// never end by themselves (audit export --follow), which would otherwise hold
	// the drain to its timeout.
	drains []func()
	// closed run after the audit log closed (and signed its final
	// checkpoint): they deliver what the log left behind, such as that
	// checkpoint to its destinations.
	closed []func()
	// reloaders apply a new, validated config on Reload (SIGHUP).
	reloaders []func(context.Context, *config.Config) error

	metrics   *metrics.Metrics
	readiness *metrics.Readiness
	health    *health.Server
	httpSrv   *http.Server // metrics.listen; nil when not configured
	pprof     bool         // metrics.pprof: the handler also serves /debug/pprof/
}

// The refusal budget for callers that never authenticated (see refusalBudget):
// per window, the first refusalsPerHost refusals of each peer host (an IPv6
// /64), and at most refusalsGlobal in all, are audited one by one; the rest in
// one summary record per host for the first refusalHosts hosts of the window,
// and one for all other hosts together. So unauthenticated traffic writes at
// most refusalsGlobal + refusalHosts + 1 records per window, however many
// addresses it comes from.
const (
	refusalWindow   = time.Minute
	refusalsPerHost = 10
	refusalsGlobal  = 600
	refusalHosts    = 100
)

// streamWorkers is how many goroutines serve gRPC streams before the server
// falls back to one goroutine per stream; a long-lived watch holds one.
const streamWorkers = 64

// New builds a Server from a validated config. It fails (and releases what it had
// opened) when the policy does not compile, a descriptor set cannot be read, or the
// audit log cannot be opened for writing: the proxy must not start without them.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *Server, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AfterFunc == nil {
		opts.AfterFunc = afterFunc
	}
	if opts.AuditTimeout == 0 {
		opts.AuditTimeout = 5 * time.Second
	}
	s := &Server{log: opts.Logger, now: opts.Now, cfg: cfg, opts: opts, maxConns: cfg.Limits.MaxConnections}
	defer func() {
		if err != nil {
			if s.grpc != nil {
				s.grpc.Stop() // its stream workers run from NewServer on
			}
			s.stopOps()
			for i := len(s.stops) - 1; i >= 0; i-- {
				s.stops[i](context.Background())
			}
			s.closeUpstreams()
			if s.store != nil {
				s.store.Close()
			}
			s.runClosed()
		}
	}()

	creds, notAfter, err := serverCredentials(cfg)
	if err != nil {
		return nil, err
	}
	classifier, err := identity.NewClassifier(principalRules(cfg))
	if err != nil {
		return nil, err
	}
	auth, err := s.authenticator(classifier)
	if err != nil {
		return nil, err
	}
	if a, ok := auth.(*identity.Authenticator); ok {
		// identity.principals changes apply on reload: new calls are classified
		// by the new rules.
		s.reloaders = append(s.reloaders, func(_ context.Context, cfg *config.Config) error {
			c, err := identity.NewClassifier(principalRules(cfg))
			if err != nil {
				return err
			}
			a.SetClassifier(c)
			return nil
		})
	}
	// Calls in progress are authenticated again with the rules and keys the
	// reloaders above put in force; those no longer accepted as they were end.
	s.reloaders = append(s.reloaders, func(ctx context.Context, _ *config.Config) error {
		if n := s.pipeline.reauthenticate(ctx); n > 0 {
			s.log.Info("reload ended calls whose principal is no longer accepted as it was", "calls", n)
		}
		return nil
	})

	paths := make([]string, len(cfg.Policy.Paths))
	for i, p := range cfg.Policy.Paths {
		paths[i] = cfg.Resolve(p)
	}
	engine, err := policy.Load(ctx, policy.Options{Paths: paths, Config: cfg.PolicyData()})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}

	tr, err := s.wireTracing(ctx) // before dialling: upstream connections take its handler
	if err != nil {
		return nil, err
	}

	rt := &router{}
	for i, uc := range cfg.Upstreams {
		up, err := dialUpstream(cfg, uc, cfg.Limits.MaxMessageBytes, tr.dialOption())
		if err != nil {
			return nil, fmt.Errorf("upstreams[%d] (%s): %w", i, uc.Name, err)
		}
		s.upstreams = append(s.upstreams, up)
		for _, g := range uc.Services {
			rt.routes = append(rt.routes, route{glob: g, upstream: up})
		}
	}

	var sets []*decode.Protoset
	for _, up := range s.upstreams {
		if up.protoset != nil {
			sets = append(sets, up.protoset)
		}
	}
	if err := CheckRedact(cfg.Audit.Redact, sets); err != nil {
		return nil, err
	}

	s.metrics = metrics.New()
	s.metrics.CertificateExpiry.WithLabelValues("server").Set(float64(notAfter.Unix()))
	handshakes := newHandshakeLog(s.log, s.metrics, opts.Now)
	handshakes.run(handshakeWindow / 4)
	s.stops = append(s.stops, func(context.Context) { handshakes.stop() })
	creds = handshakeCreds{TransportCredentials: creds, log: handshakes}
	s.store, err = audit.Open(cfg.Resolve(cfg.Audit.Path), audit.Options{
		Redact: cfg.Audit.Redact, MaxRequestBytes: cfg.Audit.MaxRequestBytes, Now: opts.Now, OnCommit: s.metrics.ObserveCommit,
		Warn: func(msg string) { s.log.Warn("audit log damaged", "detail", msg) },
	})
	if err != nil {
		return nil, fmt.Errorf("audit.path: %w", err)
	}

	s.pipeline = &Pipeline{
		metrics:           s.metrics,
		auth:              auth,
		routes:            rt,
		mode:              policy.Mode(cfg.Policy.Mode),
		audit:             s.store,
		now:               opts.Now,
		maxUnaryDeadline:  cfg.Limits.MaxUnaryDeadline,
		control:           controlAuthz{auditReaders: cfg.Audit.Readers, approverGroups: cfg.Breakglass.ApproverGroups},
		auditTimeout:      opts.AuditTimeout,
		log:               opts.Logger,
		evals:             newEvalPool(2 * runtime.GOMAXPROCS(0)),
		refusals:          newRefusalBudget(refusalWindow, refusalsPerHost, refusalsGlobal, refusalHosts),
		afterFunc:         opts.AfterFunc,
		streams:           newStreams(cfg.Limits.FirstMessageTimeout, cfg.Limits.MaxStreamsPerPrincipal, opts.AfterFunc),
		principalRefusals: newPrincipalRefusalBudget(refusalWindow, principalRefusalBytes, principalRefusalsGlobal, principalRefusalKeys),
		headers:           newHeaderAllow(cfg.Audit.Headers),
		maxRequestBytes:   cfg.Audit.MaxRequestBytes,
	}
	s.pipeline.SetPolicy(engine)
	s.drains = append(s.drains, func() { s.pipeline.streams.stopping.Store(true) })
	s.stops = append(s.stops, func(context.Context) { s.pipeline.evals.Close() })
	s.startRefusalFlusher()
	tr.annotate(s.pipeline)

	fwd := &forwarder{route: rt.lookup}
	s.grpc = grpc.NewServer(
		grpc.Creds(creds),
		grpc.ForceServerCodecV2(rawCodec{}),
		// Long-lived goroutines serve the streams (a new one only when all are
		// busy): a fresh goroutine per call grows its stack by copying on every
		// call, which a CPU profile showed as a large share of the proxy's time.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.UnknownServiceHandler(fwd.handle),
		// The tap arms every call's first-message timer as its headers arrive;
		// the guards outside the pipeline's interceptors see how it ends.
		grpc.InTapHandle(s.pipeline.tap),
		grpc.ChainStreamInterceptor(s.pipeline.guardStream, s.pipeline.intercept),
		grpc.ChainUnaryInterceptor(s.pipeline.guardUnary, s.pipeline.controlUnary), // only the control API has unary handlers
		grpc.MaxRecvMsgSize(cfg.Limits.MaxMessageBytes),
		// No send limit of the server's own: a forwarded response is already held to
		// max_message_bytes by the upstream connection's receive limit, and a control
		// API reply (an audit export chunk holding one record of a maximal request, whose
		// rendering is larger than the request) must not be cut at it.
		grpc.MaxConcurrentStreams(cfg.Limits.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(cfg.Limits.MaxHeaderBytes),
		// Clients such as etcdctl ping every 10s, also on idle watches; the default
		// enforcement policy would answer with GOAWAY and cut long-lived streams.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		tr.serverOption(), // nothing when tracing is off
	)

	ztpv1.RegisterPolicyServer(s.grpc, &policyService{p: s.pipeline})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	for _, wire := range []func(context.Context) error{s.wireAudit, s.wirePolicy, s.wireBreakglass, s.wireRateLimits} {
		if err := wire(ctx); err != nil {
			return nil, err
		}
	}

	if err := s.startOps(cfg); err != nil {
		return nil, err
	}

	s.system(ctx, fmt.Sprintf("started; policy %s mode %s", engine.Version(), cfg.Policy.Mode))
	return s, nil
}

// Serve accepts connections on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	if n := s.maxConns; n > 0 {
		lis = netutil.LimitListener(lis, n)
	}
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown stops accepting calls, lets calls in flight finish until ctx ends (then
// cuts the rest: long-lived watches would otherwise hold shutdown forever), closes
// the upstream connections and finally the audit log, after recording the stop.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, d := range s.drains {
		d()
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	s.stopOps()
	s.closeUpstreams()
	s.pipeline.WaitOutcomes()
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i](ctx)
	}
	s.system(context.Background(), "stopped")
	err := s.store.Close()
	s.runClosed()
	return err
}

func (s *Server) runClosed() {
	for _, f := range s.closed {
		f()
	}
}

// Reload re-reads the config file and applies what can change at run time
// (policies, rate limits, …). The new config is validated first; on any error
// nothing changes and the running config stays in force.
//
// Each subsystem validates its part before applying it; should a later one
// fail, the earlier ones stay applied (and audited) and the error says which failed.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := config.Load(s.cfg.File)
	if err != nil {
		return err
	}
	for _, r := range s.reloaders {
		if err := r(ctx, cfg); err != nil {
			return err
		}
	}
	s.cfg = cfg
	return nil
}

// Pipeline exposes the pipeline (for policy reloads).
func (s *Server) Pipeline() *Pipeline { return s.pipeline }

// AuditStore exposes the audit store the server writes to.
func (s *Server) AuditStore() *audit.Store { return s.store }

func (s *Server) system(ctx context.Context, detail string) {
	rec := &audit.Record{Time: s.now().UTC(), Type: "system", Detail: detail}
	if _, err := s.store.Append(ctx, rec); err != nil {
		s.log.Error("audit append failed for system record", "detail", detail, "err", err)
	}
}

// startRefusalFlusher audits the refusal summaries of each window as it ends,
// also when no further refusal arrives to close it, and the last ones at
// shutdown.
func (s *Server) startRefusalFlusher() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(refusalWindow / 4)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				s.pipeline.FlushRefusals(context.Background(), false)
			}
		}
	}()
	var once sync.Once // Shutdown may run the stops twice
	s.stops = append(s.stops, func(ctx context.Context) {
		once.Do(func() {
			close(stop)
			<-done
			s.pipeline.FlushRefusals(ctx, true)
		})
	})
}

func (s *Server) closeUpstreams() {
	for _, u := range s.upstreams {
		u.conn.Close()
	}
}

func principalRules(cfg *config.Config) []identity.Rule {
	rules := make([]identity.Rule, len(cfg.Identity.Principals))
	for i, r := range cfg.Identity.Principals {
		rules[i] = identity.Rule{Match: r.Match, Kind: r.Kind, Groups: r.Groups, Person: r.Person}
	}
	return rules
}

// serverCredentials also returns the serving certificate's NotAfter, for
// ztp_tls_certificate_expiry_timestamp_seconds.
func serverCredentials(cfg *config.Config) (credentials.TransportCredentials, time.Time, error) {
	cert, err := tls.LoadX509KeyPair(cfg.Resolve(cfg.TLS.Cert), cfg.Resolve(cfg.TLS.Key))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("tls.cert: %w", err)
	}
	if cert.Leaf == nil { // LoadX509KeyPair parses it since Go 1.23
		return nil, time.Time{}, errors.New("tls.cert: certificate not parsed")
	}
	pool, err := loadPool(cfg.Resolve(cfg.TLS.ClientCA))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("tls.client_ca: %w", err)
	}
	auth := tls.RequireAndVerifyClientCert
	if cfg.TLS.ClientAuth == "verify_if_given" {
		auth = tls.VerifyClientCertIfGiven
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   auth,
		MinVersion:   tls.VersionTLS12,
	}), cert.Leaf.NotAfter, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return pool, nil
}

func dialUpstream(cfg *config.Config, uc config.Upstream, maxMsg int, trace grpc.DialOption) (*upstream, error) {
	var creds credentials.TransportCredentials
	if uc.TLS.Insecure {
		creds = insecure.NewCredentials()
	} else {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: uc.TLS.ServerName}
		if uc.TLS.CA != "" {
			pool, err := loadPool(cfg.Resolve(uc.TLS.CA))
			if err != nil {
				return nil, fmt.Errorf("tls.ca: %w", err)
			}
			tc.RootCAs = pool
		}
		if uc.TLS.Cert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.Resolve(uc.TLS.Cert), cfg.Resolve(uc.TLS.Key))
			if err != nil {
				return nil, fmt.Errorf("tls.cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(uc.Address,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg), grpc.MaxCallSendMsgSize(maxMsg)),
		// The proxy never retries on its own: a retried message would reach the
		// upstream twice on one audited decision, and a service config from the
		// upstream's name resolver must not be able to turn retries on. (gRPC's
		// transparent retries of calls that never reached the server remain.)
		// It also spares every message the copy kept for replay.
		grpc.WithDisableRetry(),
		grpc.WithDisableServiceConfig(),
		trace,
	)
	if err != nil {
		return nil, err
	}
	up := &upstream{name: uc.Name, conn: conn}
	opts := []decode.Option{decode.WithLimits(cfg.Limits.MaxDecodedNodes, cfg.Limits.MaxDecodeDepth)}
	if uc.AllowDuplicateFields {
		opts = append(opts, decode.AllowDuplicateFields())
	}
	switch {
	case uc.Descriptors != "":
		ps, err := decode.LoadProtoset(cfg.Resolve(uc.Descriptors))
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("descriptors: %w", err)
		}
		up.decoder, up.protoset = decode.NewDecoder(ps, opts...), ps
	case uc.Reflection:
		up.decoder = decode.NewDecoder(decode.NewReflection(conn, decode.ReflectionOptions{}), opts...)
	}
	if uc.EffectQueries != nil {
		q, err := newEffectQuerier(uc.Name, conn, up.protoset, uc.EffectQueries)
		if err != nil {
			conn.Close()
			return nil, err
		}
		up.querier = q
	}
	return up, nil
}
