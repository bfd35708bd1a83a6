package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/policy"
)

// tracingFlushTimeout bounds the final export at shutdown: a collector that is
// down must not hold the proxy's exit (spans are then lost, calls never were).
const tracingFlushTimeout = 5 * time.Second

// tracing is one Server's OpenTelemetry setup: its own TracerProvider and
// propagator, handed to otelgrpc explicitly so that nothing global is touched
// (two Servers in one process trace independently). A nil *tracing means
// tracing is off; its methods then add nothing, so no stats handler runs per
// call and the hot path is what it is without tracing.
type tracing struct {
	provider   *sdktrace.TracerProvider
	propagator propagation.TextMapPropagator
}

// wireTracing builds the tracer provider when the config has a tracing
// section, and registers its shutdown (which flushes buffered spans) in
// s.stops. It runs before the upstreams are dialled and the gRPC server is
// built, since both take their handlers at construction. Changes to the
// tracing section take effect at the next start, not on reload.
//
// Exporting is best effort and off the call path: spans are batched and sent
// in the background, an unreachable collector neither fails nor slows calls,
// and the proxy starts even when the collector is down.
func (s *Server) wireTracing(ctx context.Context) (*tracing, error) {
	tc := s.cfg.Tracing
	if !tc.Enabled {
		return nil, nil
	}
	var process sdktrace.TracerProviderOption
	var otlp *reportingExporter
	if exp := s.opts.SpanExporter; exp != nil {
		process = sdktrace.WithSyncer(exp)
	} else {
		exp, err := otlpExporter(ctx, s.cfg)
		if err != nil {
			return nil, err
		}
		otlp = newReportingExporter(exp, s.log)
		process = sdktrace.WithBatcher(otlp)
	}
	// Merged over the default (SDK, process and OTEL_RESOURCE_ATTRIBUTES) so
	// that tracing.service_name wins over OTEL_SERVICE_NAME.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(tc.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		process,
		sdktrace.WithResource(res),
		// A caller that sampled its trace gets the proxy's spans in it; new
		// traces are sampled at the configured ratio.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(tc.SampleRatio))),
	)
	s.stops = append(s.stops, func(ctx context.Context) {
		// Not bounded by ctx alone: it may already have been spent draining calls,
		// and the spans of those very calls are the ones still buffered.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingFlushTimeout)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil {
			s.log.Warn("tracing: spans not flushed at shutdown", "err", err)
		}
		if otlp != nil {
			// Past the deadline the SDK stops waiting but leaves its export
			// running, retrying a collector that does not answer: end it, so
			// that the exporter closes its connection before the proxy exits.
			otlp.abort()
			select {
			case <-otlp.closed:
			case <-time.After(time.Second):
			}
		}
	})
	s.log.Info("tracing enabled", "otlp_endpoint", tc.OTLPEndpoint, "sample_ratio", tc.SampleRatio, "service_name", tc.ServiceName)
	return &tracing{
		provider:   tp,
		propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// otlpExporter connects (lazily: grpc.NewClient does not dial) to the collector.
// OTEL_EXPORTER_OTLP_* variables the config does not cover, such as headers
// for the collector's authentication, still apply.
func otlpExporter(ctx context.Context, cfg *config.Config) (sdktrace.SpanExporter, error) {
	tc := cfg.Tracing
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(tc.OTLPEndpoint)}
	switch {
	case tc.Insecure:
		opts = append(opts, otlptracegrpc.WithInsecure())
	case tc.CA != "":
		pool, err := loadPool(cfg.Resolve(tc.CA))
		if err != nil {
			return nil, fmt.Errorf("tracing.ca: %w", err)
		}
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewClientTLSFromCert(pool, "")))
	default:
		// Set explicitly: the exporter would otherwise take OTEL_EXPORTER_OTLP_INSECURE
		// from the environment over the config's choice of TLS.
		opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewClientTLSFromCert(nil, "")))
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing.otlp_endpoint: %w", err)
	}
	return exp, nil
}

// serverOption installs the otelgrpc server handler: one server span per call,
// a child of the caller's span when it sent a traceparent. Health checks are
// not traced (probes would drown the calls that matter).
func (t *tracing) serverOption() grpc.ServerOption {
	if t == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.StatsHandler(otelgrpc.NewServerHandler(append(t.options(), otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))...))
}

// dialOption installs the otelgrpc client handler on an upstream connection:
// the upstream call becomes a child span of the server span, and its
// traceparent replaces the one the forwarder copied from the caller.
func (t *tracing) dialOption() grpc.DialOption {
	if t == nil {
		return grpc.EmptyDialOption{}
	}
	return grpc.WithStatsHandler(otelgrpc.NewClientHandler(t.options()...))
}

func (t *tracing) options() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithPropagators(t.propagator),
		// The proxy's metrics are Prometheus'; without this otelgrpc would
		// record into the global MeterProvider.
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
	}
}

// annotate makes the pipeline's decisions visible on the server span, by
// wrapping its auditor: every decision is appended there, with the call's
// context (and so its span).
func (t *tracing) annotate(p *Pipeline) {
	if t == nil {
		return
	}
	p.audit = spanAuditor{p.audit}
}

// Span attribute and event names for decisions. ztp.audit.seq joins a trace
// with the audit log (and the "decision" log line).
const (
	attrDecision     = attribute.Key("ztp.decision")
	attrAuditSeq     = attribute.Key("ztp.audit.seq")
	attrPrincipal    = attribute.Key("ztp.principal")
	attrUpstream     = attribute.Key("ztp.upstream")
	attrPolicy       = attribute.Key("ztp.policy.version")
	attrGrant        = attribute.Key("ztp.breakglass.grant")
	attrMessageIndex = attribute.Key("ztp.message_index")
	eventDecision    = "ztp.decision"
	eventAuditFailed = "ztp.audit_failed"
)

// spanAuditor records decisions on the span of the call being decided. The
// first message's decision becomes attributes of the span; a later message
// adds an event only when it is not allowed, so a watch streaming for days
// does not grow its span per message. Reasons are left out: they can quote
// the request, and traces leave the host for systems auditors do not control.
type spanAuditor struct {
	Auditor
}

func (a spanAuditor) Append(ctx context.Context, rec *audit.Record) (uint64, error) {
	seq, err := a.Auditor.Append(ctx, rec)
	if rec.Type != "request" {
		return seq, err
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return seq, err
	}
	if err != nil {
		span.AddEvent(eventAuditFailed, trace.WithAttributes(attrMessageIndex.Int(rec.MessageIndex)))
		return seq, err
	}
	if rec.MessageIndex > 0 {
		if rec.Decision != policy.DecisionAllow {
			span.AddEvent(eventDecision, trace.WithAttributes(
				attrDecision.String(rec.Decision),
				attrAuditSeq.Int64(int64(seq)),
				attrMessageIndex.Int(rec.MessageIndex)))
		}
		return seq, err
	}
	attrs := []attribute.KeyValue{attrDecision.String(rec.Decision), attrAuditSeq.Int64(int64(seq))}
	if rec.Principal != nil {
		attrs = append(attrs, attrPrincipal.String(rec.Principal.ID))
	}
	if rec.Upstream != "" {
		attrs = append(attrs, attrUpstream.String(rec.Upstream))
	}
	if rec.PolicyVersion != "" {
		attrs = append(attrs, attrPolicy.String(rec.PolicyVersion))
	}
	if rec.BreakglassGrant != "" {
		attrs = append(attrs, attrGrant.String(rec.BreakglassGrant))
	}
	span.SetAttributes(attrs...)
	return seq, err
}

// reportingExporter wraps the OTLP exporter. It logs export failures through
// the proxy's logger, once when exporting starts failing and once when it
// recovers, instead of letting the SDK hand every failed batch to
// OpenTelemetry's global error handler; and it lets shutdown abort an export
// that outlived the flush deadline.
type reportingExporter struct {
	sdktrace.SpanExporter
	log     *slog.Logger
	failing atomic.Bool
	aborted context.Context // ends every export in flight once done
	abort   context.CancelFunc
	closed  chan struct{} // closed when the exporter has shut down
	once    sync.Once
}

func newReportingExporter(exp sdktrace.SpanExporter, log *slog.Logger) *reportingExporter {
	ctx, cancel := context.WithCancel(context.Background())
	return &reportingExporter{SpanExporter: exp, log: log, aborted: ctx, abort: cancel, closed: make(chan struct{})}
}

func (e *reportingExporter) Shutdown(ctx context.Context) error {
	defer e.once.Do(func() { close(e.closed) })
	return e.SpanExporter.Shutdown(ctx)
}

func (e *reportingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.aborted, cancel)()
	err := e.SpanExporter.ExportSpans(ctx, spans)
	switch {
	case err != nil && !e.failing.Swap(true):
		e.log.Warn("tracing: spans not exported; dropping spans until the collector answers", "err", err, "spans", len(spans))
	case err == nil && e.failing.Swap(false):
		e.log.Info("tracing: exporting spans again")
	}
	return nil
}
