package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

const (
	unaryMethod = "/grpc.testing.TestService/UnaryCall"
	// The caller's trace: W3C traceparent is version-traceid-parentid-flags.
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// tracingYAML is a tracing section whose collector is never dialled in tests
// that inject an exporter.
func tracingYAML(ratio string) string {
	return "tracing:\n  otlp_endpoint: 127.0.0.1:4317\n  insecure: true\n  sample_ratio: " + ratio + "\n"
}

// spanSink is an in-memory exporter that signals every export, so tests wait
// for spans (a server span ends only after the client has its answer) instead
// of sleeping.
type spanSink struct {
	*tracetest.InMemoryExporter
	exported chan struct{}
}

func newSpanSink() *spanSink {
	return &spanSink{InMemoryExporter: tracetest.NewInMemoryExporter(), exported: make(chan struct{}, 1)}
}

func (s *spanSink) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := s.InMemoryExporter.ExportSpans(ctx, spans)
	select {
	case s.exported <- struct{}{}:
	default:
	}
	return err
}

// waitSpans returns the exported spans once done accepts them.
func (s *spanSink) waitSpans(t *testing.T, what string, done func(tracetest.SpanStubs) bool) tracetest.SpanStubs {
	t.Helper()
	ctx := proxytest.Ctx(t)
	for {
		if spans := s.GetSpans(); done(spans) {
			return spans
		}
		select {
		case <-s.exported:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: got spans %s", what, describe(s.GetSpans()))
		}
	}
}

func describe(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "[%s %s trace=%s span=%s parent=%s] ", s.SpanKind, s.Name, s.SpanContext.TraceID(), s.SpanContext.SpanID(), s.Parent.SpanID())
	}
	return b.String()
}

func byKind(spans tracetest.SpanStubs, kind trace.SpanKind) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanKind == kind {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// backendTrace parses the traceparent the backend received.
func backendTrace(t *testing.T, b *proxytest.Backend) (trace.SpanContext, string) {
	t.Helper()
	md := b.MD()
	raw := strings.Join(md.Get("traceparent"), ",")
	carrier := propagation.MapCarrier{"traceparent": raw}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier)), raw
}

func startTraced(t *testing.T, extra string, sink *spanSink) *proxytest.Env {
	t.Helper()
	return proxytest.Start(t, proxytest.Options{Extra: extra, Proxy: func(o *proxy.Options) { o.SpanExporter = sink }})
}

// TestTracingPropagatesCallersTrace: with tracing on, a caller's trace continues
// through the proxy: a server span under the caller's span, a client span under
// it for the upstream call, and the upstream sees the client span as its parent.
func TestTracingPropagatesCallersTrace(t *testing.T) {
	sink := newSpanSink()
	e := startTraced(t, tracingYAML("0.5"), sink)
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t), "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	if _, err := e.Dial(t, proxytest.DeployerID).UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}

	got, raw := backendTrace(t, e.Backend)
	if !got.IsValid() || got.TraceID().String() != callerTrace {
		t.Fatalf("backend traceparent = %q, want trace id %s", raw, callerTrace)
	}
	if got.SpanID().String() == callerSpan {
		t.Errorf("backend traceparent = %q: parent is the caller's span, want the proxy's client span", raw)
	}
	if !got.IsSampled() {
		t.Errorf("backend traceparent = %q, want sampled flag kept", raw)
	}

	spans := sink.waitSpans(t, "server and client span", func(s tracetest.SpanStubs) bool {
		return len(byKind(s, trace.SpanKindServer)) == 1 && len(byKind(s, trace.SpanKindClient)) == 1
	})
	srv, cli := byKind(spans, trace.SpanKindServer)[0], byKind(spans, trace.SpanKindClient)[0]
	for _, c := range []struct {
		name      string
		span      tracetest.SpanStub
		wantTrace string
		wantPar   string
	}{
		{"server span", srv, callerTrace, callerSpan},
		{"client span", cli, callerTrace, srv.SpanContext.SpanID().String()},
	} {
		if c.span.SpanContext.TraceID().String() != c.wantTrace || c.span.Parent.SpanID().String() != c.wantPar {
			t.Errorf("%s: trace %s parent %s, want trace %s parent %s", c.name,
				c.span.SpanContext.TraceID(), c.span.Parent.SpanID(), c.wantTrace, c.wantPar)
		}
		if want := "grpc.testing.TestService/UnaryCall"; c.span.Name != want {
			t.Errorf("%s name = %q, want %q", c.name, c.span.Name, want)
		}
	}
	if cli.SpanContext.SpanID() != got.SpanID() {
		t.Errorf("backend's parent span = %s, want the client span %s", got.SpanID(), cli.SpanContext.SpanID())
	}
	if v, _ := srv.Resource.Set().Value("service.name"); v.AsString() != "ztp-proxy" {
		t.Errorf("service.name = %q, want ztp-proxy", v.AsString())
	}

	reqs := e.Requests(t, unaryMethod)
	if len(reqs) != 1 {
		t.Fatalf("request records = %d, want 1", len(reqs))
	}
	if got, want := strings.Join(reqs[0].Metadata["traceparent"], ","), "00-"+callerTrace+"-"+callerSpan+"-01"; got != want {
		t.Errorf("audit record metadata traceparent = %q, want the caller's %q", got, want)
	}
	for _, c := range []struct {
		key  attribute.Key
		want attribute.Value
	}{
		{"ztp.decision", attribute.StringValue("allow")},
		{"ztp.audit.seq", attribute.Int64Value(int64(reqs[0].Seq))},
		{"ztp.principal", attribute.StringValue(proxytest.DeployerID)},
		{"ztp.upstream", attribute.StringValue("test")},
		{"ztp.policy.version", attribute.StringValue(reqs[0].PolicyVersion)},
	} {
		if v, ok := attr(srv, c.key); !ok || v != c.want {
			t.Errorf("server span %s = %v (present %v), want %v", c.key, v.String(), ok, c.want.String())
		}
	}
}

// TestTracingSpans covers the shapes of traces the proxy produces.
func TestTracingSpans(t *testing.T) {
	tests := []struct {
		name        string
		ratio       string
		caller      string // caller's id
		traceparent string // sent by the caller; "" sends none
		wantCode    codes.Code
		wantServer  int // server spans exported
		wantClient  int // client (upstream) spans exported
		wantDecided string
	}{
		{"no caller trace: proxy starts one", "1", proxytest.DeployerID, "", codes.OK, 1, 1, "allow"},
		{"denied call: no upstream span", "1", proxytest.AliceID, "00-" + callerTrace + "-" + callerSpan + "-01", codes.PermissionDenied, 1, 0, "deny"},
		{"caller sampled, ratio 0: followed", "0", proxytest.DeployerID, "00-" + callerTrace + "-" + callerSpan + "-01", codes.OK, 1, 1, "allow"},
		{"caller not sampled: nothing recorded", "1", proxytest.DeployerID, "00-" + callerTrace + "-" + callerSpan + "-00", codes.OK, 0, 0, ""},
		{"ratio 0, no caller trace: nothing recorded", "0", proxytest.DeployerID, "", codes.OK, 0, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := newSpanSink()
			e := startTraced(t, tracingYAML(tc.ratio), sink)
			ctx := proxytest.Ctx(t)
			if tc.traceparent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tc.traceparent)
			}
			c := e.Dial(t, tc.caller)
			_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			if status.Code(err) != tc.wantCode {
				t.Fatalf("UnaryCall = %v, want %v", err, tc.wantCode)
			}
			upstreamSaw, raw := backendTrace(t, e.Backend)
			// A sampled call after it, so that "no spans" can be told from "not
			// yet": sampling is decided when a span starts, and the first call's
			// spans started before the marker's.
			marker := metadata.AppendToOutgoingContext(proxytest.Ctx(t), "traceparent", "00-"+strings.Repeat("ab", 16)+"-"+callerSpan+"-01")
			if _, err := e.Dial(t, proxytest.DeployerID).EmptyCall(marker, &testgrpc.Empty{}); err != nil {
				t.Fatalf("EmptyCall (marker): %v", err)
			}
			split := func(all tracetest.SpanStubs) (spans tracetest.SpanStubs, marked bool) {
				for _, s := range all {
					if s.Name == "grpc.testing.TestService/EmptyCall" {
						marked = marked || s.SpanKind == trace.SpanKindServer
					} else {
						spans = append(spans, s)
					}
				}
				return spans, marked
			}
			all := sink.waitSpans(t, "marker and expected spans", func(all tracetest.SpanStubs) bool {
				spans, marked := split(all)
				return marked && len(byKind(spans, trace.SpanKindServer)) >= tc.wantServer && len(byKind(spans, trace.SpanKindClient)) >= tc.wantClient
			})
			spans, _ := split(all)
			srv, cli := byKind(spans, trace.SpanKindServer), byKind(spans, trace.SpanKindClient)
			if len(srv) != tc.wantServer || len(cli) != tc.wantClient {
				t.Fatalf("server spans %d, client spans %d; want %d, %d: %s", len(srv), len(cli), tc.wantServer, tc.wantClient, describe(spans))
			}
			if tc.wantServer == 0 {
				return
			}
			if v, _ := attr(srv[0], "ztp.decision"); v.AsString() != tc.wantDecided {
				t.Errorf("ztp.decision = %q, want %q", v.AsString(), tc.wantDecided)
			}
			if tc.traceparent == "" {
				if srv[0].Parent.IsValid() {
					t.Errorf("server span parent = %s, want a root span", srv[0].Parent.SpanID())
				}
				if upstreamSaw.TraceID() != srv[0].SpanContext.TraceID() {
					t.Errorf("backend traceparent = %q, want trace %s", raw, srv[0].SpanContext.TraceID())
				}
			} else if srv[0].SpanContext.TraceID().String() != callerTrace {
				t.Errorf("server span trace = %s, want %s", srv[0].SpanContext.TraceID(), callerTrace)
			}
		})
	}
}

// TestTracingUnsampledStillPropagates: a trace nobody records still reaches
// the upstream, unsampled, so the upstream does not start recording it either.
func TestTracingUnsampledStillPropagates(t *testing.T) {
	sink := newSpanSink()
	e := startTraced(t, tracingYAML("1"), sink)
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t), "traceparent", "00-"+callerTrace+"-"+callerSpan+"-00")
	if _, err := e.Dial(t, proxytest.DeployerID).UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	got, raw := backendTrace(t, e.Backend)
	if got.TraceID().String() != callerTrace || got.IsSampled() {
		t.Errorf("backend traceparent = %q, want trace %s, not sampled", raw, callerTrace)
	}
}

// TestTracingOff: without a tracing section nothing is traced, even with an
// exporter at hand, and the caller's trace context passes through untouched
// like any other metadata.
func TestTracingOff(t *testing.T) {
	sink := newSpanSink()
	e := startTraced(t, "", sink)
	const tp = "00-" + callerTrace + "-" + callerSpan + "-01"
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t), "traceparent", tp, "tracestate", "vendor=x", "baggage", "k=v")
	if _, err := e.Dial(t, proxytest.DeployerID).UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	md := e.Backend.MD()
	for _, c := range []struct{ key, want string }{{"traceparent", tp}, {"tracestate", "vendor=x"}, {"baggage", "k=v"}} {
		if got := strings.Join(md.Get(c.key), ","); got != c.want {
			t.Errorf("backend %s = %q, want %q (unchanged)", c.key, got, c.want)
		}
	}
	e.Records(t) // the call has fully ended: outcome recorded
	if spans := sink.GetSpans(); len(spans) != 0 {
		t.Errorf("exported %d spans with tracing off: %s", len(spans), describe(spans))
	}
}

// TestTracingStreamDenialEvent: a stream whose later message is refused gets a
// decision event on its span; allowed messages after the first add nothing.
func TestTracingStreamDenialEvent(t *testing.T) {
	sink := newSpanSink()
	e := startTraced(t, tracingYAML("1"), sink)
	stream, err := e.Dial(t, proxytest.DeployerID).FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, body := range []string{"a", "b", "forbidden"} {
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			t.Fatalf("Send(%d): %v", i, err)
		}
		if body == "forbidden" {
			break
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv(%d): %v", i, err)
		}
	}
	for {
		if _, err = stream.Recv(); err != nil {
			break
		}
	}
	proxytest.WantCode(t, "FullDuplexCall", err, codes.PermissionDenied, "never allowed")

	spans := sink.waitSpans(t, "server span", func(s tracetest.SpanStubs) bool { return len(byKind(s, trace.SpanKindServer)) == 1 })
	srv := byKind(spans, trace.SpanKindServer)[0]
	if v, _ := attr(srv, "ztp.decision"); v.AsString() != "allow" {
		t.Errorf("ztp.decision = %q, want allow (the first message's)", v.AsString())
	}
	var events []string
	for _, ev := range srv.Events {
		if ev.Name != "ztp.decision" {
			continue
		}
		var d string
		var idx int64
		for _, kv := range ev.Attributes {
			switch kv.Key {
			case "ztp.decision":
				d = kv.Value.AsString()
			case "ztp.message_index":
				idx = kv.Value.AsInt64()
			}
		}
		events = append(events, fmt.Sprintf("%s@%d", d, idx))
	}
	if got, want := strings.Join(events, ","), "deny@2"; got != want {
		t.Errorf("decision events = %q, want %q", got, want)
	}
}

// TestTracingSkipsHealthChecks: probes would drown the calls that matter.
func TestTracingSkipsHealthChecks(t *testing.T) {
	sink := newSpanSink()
	e := startTraced(t, tracingYAML("1"), sink)
	conn := e.Conn(t, proxytest.DeployerID)
	if _, err := healthpb.NewHealthClient(conn).Check(proxytest.Ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health Check: %v", err)
	}
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall: %v", err)
	}
	spans := sink.waitSpans(t, "EmptyCall server span", func(s tracetest.SpanStubs) bool { return len(byKind(s, trace.SpanKindServer)) > 0 })
	for _, s := range spans {
		if strings.Contains(s.Name, "Health") {
			t.Errorf("health check traced: %s", describe(tracetest.SpanStubs{s}))
		}
	}
}

// collector is an OTLP/gRPC trace collector on loopback.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	fail  error // returned by every Export when set
	mu    sync.Mutex
	spans []*tracepb.Span
	names []string // service.name of each span's resource
	Addr  string
}

func startCollector(t testing.TB, fail error) *collector {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{fail: fail, Addr: lis.Addr().String()}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, c)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return c
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if c.fail != nil {
		return nil, c.fail
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		name := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				name = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, s)
				c.names = append(c.names, name)
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// TestTracingOTLP runs the production path: spans batched to a real OTLP
// collector over gRPC and flushed when the proxy shuts down. A collector that
// refuses them, or is not there at all, neither fails calls nor holds shutdown
// past its bound, and is reported in the log; TestMain's leak check then
// proves the exporter left nothing running.
func TestTracingOTLP(t *testing.T) {
	tests := []struct {
		name      string
		fail      error
		down      bool // the collector's address refuses connections
		wantSpans int
		wantLog   string
	}{
		{"collector accepts", nil, false, 2, ""},
		{"collector refuses", status.Error(codes.PermissionDenied, "no token"), false, 0, "spans not exported"},
		{"collector down", nil, true, 0, "spans not flushed at shutdown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			col := startCollector(t, tc.fail)
			addr := col.Addr
			if tc.down {
				addr = closedAddr(t)
			}
			var logs proxytest.SyncBuffer
			e := proxytest.Start(t, proxytest.Options{
				Extra: "tracing:\n  otlp_endpoint: " + addr + "\n  insecure: true\n  service_name: ztp-test\n",
				Proxy: func(o *proxy.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) },
			})
			if _, err := e.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err != nil {
				t.Fatalf("UnaryCall: %v", err)
			}
			// Spans sit in the batch (5s default delay) until shutdown flushes them.
			start := time.Now()
			if err := e.Server.Shutdown(proxytest.Ctx(t)); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("Shutdown took %v, want the flush bounded (5s)", d)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			if len(col.spans) != tc.wantSpans {
				t.Fatalf("collector got %d spans, want %d", len(col.spans), tc.wantSpans)
			}
			kinds := map[tracepb.Span_SpanKind]int{}
			for i, s := range col.spans {
				kinds[s.GetKind()]++
				if col.names[i] != "ztp-test" {
					t.Errorf("span %q service.name = %q, want ztp-test", s.GetName(), col.names[i])
				}
			}
			if tc.wantSpans > 0 && (kinds[tracepb.Span_SPAN_KIND_SERVER] != 1 || kinds[tracepb.Span_SPAN_KIND_CLIENT] != 1) {
				t.Errorf("span kinds = %v, want one server and one client", kinds)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

// BenchmarkTracing compares calls through the proxy without a tracing section,
// with tracing on but the call unsampled (the stats handlers' own cost), and
// with every call traced and batched to a loopback OTLP collector.
func BenchmarkTracing(b *testing.B) {
	for _, tc := range []struct{ name, ratio string }{{"off", ""}, {"unsampled", "0"}, {"sampled", "1"}} {
		b.Run(tc.name, func(b *testing.B) {
			extra := ""
			if tc.ratio != "" {
				extra = "tracing:\n  otlp_endpoint: " + startCollector(b, nil).Addr + "\n  insecure: true\n  sample_ratio: " + tc.ratio + "\n"
			}
			e := proxytest.Start(b, proxytest.Options{Extra: extra})
			c := e.Dial(b, proxytest.DeployerID)
			req := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("benchmark payload of a typical admin request")}}
			const conc = 64
			run(b, c, req, conc, 200) // warm up
			b.ResetTimer()
			d, lat := run(b, c, req, conc, max(b.N, conc))
			b.StopTimer()
			b.ReportMetric(float64(max(b.N, conc))/d.Seconds(), "req/s")
			b.ReportMetric(float64(pct(lat, 50))/1e3, "p50-µs")
		})
	}
}
