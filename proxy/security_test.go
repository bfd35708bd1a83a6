package proxy_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/pki"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestAuthenticationFailsClosed: every way of not being a known principal ends the
// call before the backend hears of it.
func TestAuthenticationFailsClosed(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	foreign, err := pki.NewCA("someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(ca *pki.CA, o pki.LeafOptions) tls.Certificate {
		o.Client = true
		l, err := ca.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		return l.TLS
	}
	tests := []struct {
		name  string
		certs []tls.Certificate
		code  codes.Code
		msg   string
	}{
		{"no certificate", nil, codes.Unavailable, ""},
		{"foreign CA", []tls.Certificate{issue(foreign, pki.LeafOptions{URIs: []string{proxytest.DeployerID}})}, codes.Unavailable, ""},
		{"expired", []tls.Certificate{issue(e.CA, pki.LeafOptions{URIs: []string{proxytest.DeployerID}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})}, codes.Unavailable, ""},
		{"not yet valid", []tls.Certificate{issue(e.CA, pki.LeafOptions{URIs: []string{proxytest.DeployerID}, NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(2 * time.Hour)})}, codes.Unavailable, ""},
		{"matches no principal rule", []tls.Certificate{issue(e.CA, pki.LeafOptions{URIs: []string{proxytest.StrangerID}})}, codes.Unauthenticated, "ztp:"},
		{"CN only, no rule for cn:", []tls.Certificate{issue(e.CA, pki.LeafOptions{CommonName: "deployer"})}, codes.Unauthenticated, "ztp:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := e.DialTLS(t, &tls.Config{Certificates: tc.certs, RootCAs: e.CA.Pool(), ServerName: "localhost"})
			_, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
			if err == nil {
				t.Fatal("EmptyCall succeeded, want it refused")
			}
			proxytest.WantCode(t, "EmptyCall", err, tc.code, tc.msg)
		})
	}
	if n := e.Backend.Calls.Load(); n != 0 {
		t.Errorf("backend handled %d calls, want 0", n)
	}
	// Refusals past the handshake are audited too.
	var refused int
	for _, r := range e.Records(t) {
		if r.Type == "request" && r.Decision == "deny" && strings.HasPrefix(strings.Join(r.Reasons, ""), "unauthenticated") {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("audited %d unauthenticated refusals, want 2", refused)
	}
}

func TestPolicyFailuresDeny(t *testing.T) {
	tests := []struct {
		name     string
		policy   string
		decision string
		msg      string
	}{
		{"runtime error", "package ztp\n\nallow if to_number(input.rpc) > 0\n", "error", "ztp: denied: "},
		{"undefined allow", "package ztp\n\nallow if input.no.such.field\n", "deny", "ztp: denied: "},
		{"allow not boolean", "package ztp\n\nallow := \"yes\"\n", "error", "ztp: denied: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := proxytest.Start(t, proxytest.Options{Policy: tc.policy})
			_, err := e.Dial(t, proxytest.DeployerID).EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
			proxytest.WantCode(t, "EmptyCall", err, codes.PermissionDenied, tc.msg)
			if n := e.Backend.Calls.Load(); n != 0 {
				t.Errorf("backend handled %d calls, want 0", n)
			}
			recs := e.Requests(t, "/grpc.testing.TestService/EmptyCall")
			if len(recs) != 1 || recs[0].Decision != tc.decision {
				t.Errorf("request records = %+v, want one with decision %q", recs, tc.decision)
			}
		})
	}
}

func TestDryRunForwardsAndRecords(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Mode: "dryrun"})
	if _, err := e.Dial(t, proxytest.AliceID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall in dryrun = %v, want it forwarded", err)
	}
	recs := e.Requests(t, "/grpc.testing.TestService/UnaryCall")
	if len(recs) != 1 || recs[0].Decision != "dryrun_deny" || len(recs[0].Reasons) == 0 {
		t.Errorf("request records = %+v, want one dryrun_deny with reasons", recs)
	}
	if n := e.Backend.Calls.Load(); n != 1 {
		t.Errorf("backend handled %d calls, want 1", n)
	}
}

// TestAuditFailureRefusesCall: with the audit log closed under it, the proxy refuses
// with UNAVAILABLE and forwards nothing.
func TestAuditFailureRefusesCall(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	c := e.Dial(t, proxytest.DeployerID)
	if _, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall before failure: %v", err)
	}
	if err := e.Server.AuditStore().Close(); err != nil {
		t.Fatal(err)
	}
	before := e.Backend.Calls.Load()
	_, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall with audit closed", err, codes.Unavailable, "audit")
	s, err := c.FullDuplexCall(proxytest.Ctx(t))
	if err == nil {
		s.Send(&testgrpc.StreamingOutputCallRequest{})
		_, err = s.Recv()
	}
	proxytest.WantCode(t, "FullDuplexCall with audit closed", err, codes.Unavailable, "audit")
	if n := e.Backend.Calls.Load() - before; n != 0 {
		t.Errorf("backend handled %d calls after the audit failure, want 0", n)
	}
}

func TestNoRouteIsUnimplemented(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	leaf, _ := e.CA.Issue(pki.LeafOptions{URIs: []string{proxytest.DeployerID}, Client: true})
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}, RootCAs: e.CA.Pool(), ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(proxytest.Ctx(t), "/other.Service/Do", &testgrpc.Empty{}, &testgrpc.Empty{})
	proxytest.WantCode(t, "Invoke(/other.Service/Do)", err, codes.Unimplemented, "no upstream serves /other.Service/Do")
}

func TestOversizedMessageRefused(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Limits: "  max_message_bytes: 1024\n"})
	c := e.Dial(t, proxytest.DeployerID)
	_, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: make([]byte, 4096)}})
	proxytest.WantCode(t, "UnaryCall with 4 KiB payload", err, codes.ResourceExhausted, "")
	if n := e.Backend.Calls.Load(); n != 0 {
		t.Errorf("backend handled %d calls, want 0", n)
	}
	// A response above the limit is refused too (the backend answers, the proxy won't relay).
	s, err := c.StreamingOutputCall(proxytest.Ctx(t), &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 4096}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	proxytest.WantCode(t, "Recv of 4 KiB response", err, codes.ResourceExhausted, "")
}

func TestDeadlines(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Limits: "  max_unary_deadline: 2s\n"})
	c := e.Dial(t, proxytest.DeployerID)

	// The client's own (shorter) deadline reaches the backend.
	ctx, cancel := context.WithTimeout(proxytest.Ctx(t), time.Second)
	defer cancel()
	if _, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := e.Backend.DeadlineLeft(); d <= 0 || d > time.Second {
		t.Errorf("backend deadline with 1s client deadline = %v, want (0, 1s]", d)
	}
	// The configured maximum caps a longer one.
	if _, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := e.Backend.DeadlineLeft(); d <= 0 || d > 2*time.Second {
		t.Errorf("backend deadline with 20s client deadline = %v, want (0, 2s]", d)
	}
	// Streams get none imposed.
	s, err := c.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&testgrpc.StreamingOutputCallRequest{})
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if d := e.Backend.DeadlineLeft(); d != 0 {
		t.Errorf("backend deadline on a stream = %v, want none", d)
	}
	s.CloseSend()
	s.Recv()
}

func TestCancellationReachesBackend(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	ctx, cancel := context.WithCancel(proxytest.Ctx(t))
	s, err := e.Dial(t, proxytest.DeployerID).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&testgrpc.StreamingOutputCallRequest{})
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-e.Backend.Canceled:
	case <-proxytest.Ctx(t).Done():
		t.Fatal("backend stream was not cancelled after the client cancelled")
	}
}

// TestEmptyMessageDecodesAsObject: an all-default message is {} for the policy (as
// protojson prints it), not null, so rules reading its fields evaluate instead of erroring.
func TestEmptyMessageDecodesAsObject(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Policy: "package ztp\n\nallow if {\n\tinput.request == {}\n\tinput.request_decoded\n}\n"})
	if _, err := e.Dial(t, proxytest.DeployerID).EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall = %v, want allowed by a policy matching request == {}", err)
	}
	recs := e.Requests(t, "/grpc.testing.TestService/EmptyCall")
	if len(recs) != 1 || string(recs[0].Request) != "{}" {
		t.Errorf("request records = %+v, want one with request {}", recs)
	}
}

// TestUnauthenticatedFloodIsBounded: a caller that never authenticates cannot
// make the proxy write (and fsync) a record per call. The first refusals of its
// host get their own records, the rest one summary record when the window
// ends; every call is refused and none reaches the backend.
func TestUnauthenticatedFloodIsBounded(t *testing.T) {
	clock := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	e := proxytest.Start(t, proxytest.Options{Proxy: func(o *proxy.Options) { o.Now = clock.Now }})
	leaf, err := e.CA.Issue(pki.LeafOptions{URIs: []string{proxytest.StrangerID}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	c := e.DialTLS(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, RootCAs: e.CA.Pool(), ServerName: "localhost"})
	// Forwarded methods and the proxy's own services alike.
	health := healthpb.NewHealthClient(e.ConnTLS(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, RootCAs: e.CA.Pool(), ServerName: "localhost"}))
	const calls = 200
	for i := range calls {
		var err error
		if i%2 == 0 {
			_, err = c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
		} else {
			_, err = health.Check(proxytest.Ctx(t), &healthpb.HealthCheckRequest{})
		}
		proxytest.WantCode(t, "call as a stranger", err, codes.Unauthenticated, "matches no rule")
	}
	countRefusals := func() (single, summaries int, summary string) {
		for _, r := range e.Records(t) {
			if r.Type != "request" || r.Principal != nil {
				continue
			}
			if strings.Contains(r.Reasons[0], "more unauthenticated calls") {
				summaries++
				summary = r.Reasons[0]
			} else {
				single++
			}
		}
		return
	}
	if single, summaries, _ := countRefusals(); single != 10 || summaries != 0 {
		t.Errorf("during the window: %d single refusal records and %d summaries, want 10 and 0", single, summaries)
	}

	clock.Advance(time.Minute)
	e.Server.Pipeline().FlushRefusals(proxytest.Ctx(t), false)
	single, summaries, summary := countRefusals()
	if single != 10 || summaries != 1 || !strings.Contains(summary, fmt.Sprintf("%d more unauthenticated calls from 127.0.0.1", calls-10)) {
		t.Errorf("after the window: %d single records, %d summaries (%q); want 10, 1 counting %d calls", single, summaries, summary, calls-10)
	}
	if code, body := scrape(t, e, "/metrics"); code != 200 || !strings.Contains(body, fmt.Sprintf("ztp_refusals_unrecorded_total %d", calls-10)) {
		t.Errorf("/metrics lacks ztp_refusals_unrecorded_total %d", calls-10)
	}
	if n := e.Backend.Calls.Load(); n != 0 {
		t.Errorf("backend handled %d calls, want 0", n)
	}
	// A new window records the host's refusals one by one again.
	_, err = c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall in the next window", err, codes.Unauthenticated, "")
	if single, _, _ := countRefusals(); single != 11 {
		t.Errorf("single refusal records after the next window's first call = %d, want 11", single)
	}
}

// TestRedactByProtobufNameRefused: a redact pattern that names a request field
// by its protobuf name (response_size) instead of the JSON name requests are
// recorded with (responseSize) would hide nothing; the proxy refuses to start.
func TestRedactByProtobufNameRefused(t *testing.T) {
	e := proxytest.Prepare(t, proxytest.Options{Audit: "  redact: [\"payload.body\", \"response_size\", \"*.fill_username\"]\n"})
	_, err := e.NewServer(t)
	if err == nil {
		t.Fatal("proxy.New with audit.redact [response_size] succeeded, want an error")
	}
	for _, want := range []string{
		`audit.redact[1]: "response_size": "response_size" is the protobuf name of grpc.testing.SimpleRequest.response_size; requests are recorded with JSON names, so write "responseSize"`,
		`audit.redact[2]: "*.fill_username"`, `"fillUsername"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(e.AuditFile); err == nil {
		t.Error("the audit file was created although the config was refused")
	}

	ok := proxytest.Start(t, proxytest.Options{Audit: "  redact: [\"payload.body\", \"responseSize\", \"password\"]\n"})
	if _, err := ok.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{ResponseSize: 3}); err != nil {
		t.Fatal(err)
	}
	for _, r := range ok.Records(t) {
		if r.Type == "request" && strings.Contains(string(r.Request), `"responseSize":3`) {
			t.Errorf("request record %s: responseSize not redacted", r.Request)
		}
	}
}

// TestRefusalSummaryAtShutdown: the refusals counted but not yet summarised
// when the proxy stops are audited before the log closes.
func TestRefusalSummaryAtShutdown(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	leaf, err := e.CA.Issue(pki.LeafOptions{URIs: []string{proxytest.StrangerID}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	c := e.DialTLS(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, RootCAs: e.CA.Pool(), ServerName: "localhost"})
	for range 15 {
		_, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
		proxytest.WantCode(t, "EmptyCall as a stranger", err, codes.Unauthenticated, "")
	}
	e.Stop(t)

	r, err := audit.OpenReader(e.AuditFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var summary string
	var afterStopped bool
	err = r.Scan(proxytest.Ctx(t), 1, func(rec *audit.Record) error {
		switch {
		case rec.Type == "request" && len(rec.Reasons) == 1 && strings.Contains(rec.Reasons[0], "more unauthenticated calls"):
			summary = rec.Reasons[0]
		case rec.Type == "system" && strings.HasPrefix(rec.Detail, "stopped"):
			afterStopped = summary == ""
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(summary, "5 more unauthenticated calls from 127.0.0.1") {
		t.Errorf("summary at shutdown = %q, want 5 more calls from 127.0.0.1", summary)
	}
	if afterStopped {
		t.Error("the summary was written after the stopped record")
	}
}
