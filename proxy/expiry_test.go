package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/internal/testjwt"
	"github.com/ztp-dev/ztp/pki"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// expiryEnv is a proxy whose clock and timers the test moves.
func expiryEnv(t *testing.T, o proxytest.Options) (*proxytest.Env, *testclock.Clock) {
	t.Helper()
	clk := testclock.New(time.Now().UTC().Truncate(time.Second))
	o.Proxy = func(po *proxy.Options) {
		po.Now = clk.Now
		po.AfterFunc = clk.AfterFunc
	}
	return proxytest.Start(t, o), clk
}

// shortLived connects as id with a client certificate whose NotAfter is
// notAfter (on the test's clock; it lies in real time's future, so the TLS
// handshake accepts it).
func shortLived(t *testing.T, e *proxytest.Env, id string, notAfter time.Time) *grpc.ClientConn {
	t.Helper()
	return e.ConnTLS(t, shortLivedTLS(t, e, id, notAfter))
}

// shortLivedTLS is shortLived's client TLS config.
func shortLivedTLS(t *testing.T, e *proxytest.Env, id string, notAfter time.Time) *tls.Config {
	t.Helper()
	leaf, err := e.CA.Issue(pki.LeafOptions{URIs: []string{id}, Client: true, NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, RootCAs: e.CA.Pool(), ServerName: "localhost"}
}

// openWatch opens a server-streaming call that, like an etcd watch, delivers
// what the backend's Events feed until it ends; the client sends nothing after
// its request. It checks that one event gets through.
func openWatch(t *testing.T, e *proxytest.Env, conn *grpc.ClientConn) grpc.ServerStreamingClient[testgrpc.StreamingOutputCallResponse] {
	t.Helper()
	w, err := testgrpc.NewTestServiceClient(conn).StreamingOutputCall(proxytest.Ctx(t), &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("watch")}})
	if err != nil {
		t.Fatal(err)
	}
	e.Backend.Events <- []byte("event before")
	if r, err := w.Recv(); err != nil || string(r.GetPayload().GetBody()) != "event before" {
		t.Fatalf("first event = %v, %v; want it delivered", r, err)
	}
	return w
}

// wantEnded checks that the stream ends with UNAUTHENTICATED naming why, that
// nothing the backend produced is delivered after the end, and that the
// backend's call was cancelled.
func wantEnded(t *testing.T, e *proxytest.Env, recv func() error, why string) {
	t.Helper()
	err := recv()
	proxytest.WantCode(t, "Recv on a stream whose credential ended", err, codes.Unauthenticated, why)
	if err == nil {
		t.Fatal("the stream is still delivering")
	}
	if err := recv(); err == nil || status.Code(err) != codes.Unauthenticated {
		t.Errorf("Recv after the end = %v, want the same UNAUTHENTICATED status", err)
	}
}

// wantOutcome checks that the call's outcome record names UNAUTHENTICATED and
// the reason.
func wantOutcome(t *testing.T, e *proxytest.Env, method, why string) *audit.Record {
	t.Helper()
	r := waitRecord(t, e, func(r *audit.Record) bool {
		return r.Type == "outcome" && r.Method == method && r.Code == "UNAUTHENTICATED" && strings.Contains(r.Detail, why)
	})
	if r == nil {
		t.Errorf("no outcome record for %s with code UNAUTHENTICATED and detail containing %q", method, why)
	}
	return r
}

// waitRecord returns the first audit record match accepts, waiting for it
// while the test's context lasts (nil if none came). The proxy ends a call on
// the wire when its credential does, so the client may see the status before
// the proxy's handler has returned and recorded the end. It scans the store
// without Env.Records, which waits for queued outcomes and so must not run
// while a call may still be ending.
func waitRecord(t *testing.T, e *proxytest.Env, match func(*audit.Record) bool) *audit.Record {
	t.Helper()
	ctx := proxytest.Ctx(t)
	for {
		var found *audit.Record
		err := e.Server.AuditStore().Scan(ctx, 1, func(r *audit.Record) error {
			if found == nil && match(r) {
				found = r
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if found != nil {
			return found
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestServerStreamEndsAtExpiry: a watch-like server stream, whose client sends
// nothing after its request, ends with UNAUTHENTICATED at the instant the
// client certificate's NotAfter passes, the upstream call is cancelled, no
// event produced after it is delivered, and the end is audited. A new call on
// the same connection (a client's retry), data path or control API, is
// refused at authentication.
func TestServerStreamEndsAtExpiry(t *testing.T) {
	e, clk := expiryEnv(t, proxytest.Options{})
	notAfter := clk.Now().Add(10 * time.Minute)
	conn := shortLived(t, e, proxytest.DeployerID, notAfter)
	w := openWatch(t, e, conn)

	clk.Advance(10 * time.Minute) // NotAfter itself: RFC 5280 validity includes it
	e.Backend.Events <- []byte("event at NotAfter")
	if r, err := w.Recv(); err != nil || string(r.GetPayload().GetBody()) != "event at NotAfter" {
		t.Fatalf("event at NotAfter = %v, %v; the certificate is still valid then", r, err)
	}

	clk.Advance(time.Nanosecond)
	if err := <-e.Backend.WatchEnded; !errors.Is(err, context.Canceled) {
		t.Errorf("backend watch ended with %v, want its context cancelled", err)
	}
	select {
	case e.Backend.Events <- []byte("event after"):
		t.Error("the backend's watch still takes events after the expiry")
	default:
	}
	want := "credentials expired at " + notAfter.Format(time.RFC3339)
	wantEnded(t, e, func() error { _, err := w.Recv(); return err }, want)
	rec := wantOutcome(t, e, "/grpc.testing.TestService/StreamingOutputCall", want)
	if rec != nil && rec.MessagesOut != 2 {
		t.Errorf("outcome MessagesOut = %d, want the 2 events before the expiry", rec.MessagesOut)
	}

	// A retry on the open connection: the handshake is not repeated, the
	// authenticator refuses the expired certificate.
	_, err := testgrpc.NewTestServiceClient(conn).EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall on the connection after expiry", err, codes.Unauthenticated, want)
	// The control API on the same connection answers the same.
	_, err = healthpb.NewHealthClient(conn).Check(proxytest.Ctx(t), &healthpb.HealthCheckRequest{})
	proxytest.WantCode(t, "health Check on the connection after expiry", err, codes.Unauthenticated, want)
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d expiry timers still pending after every call ended", n)
	}
}

// TestBidiStreamEndsAtExpiry: a bidi stream that stays open ends at the
// expiry without the client sending anything; the backend's call is
// cancelled and the outcome audited.
func TestBidiStreamEndsAtExpiry(t *testing.T) {
	e, clk := expiryEnv(t, proxytest.Options{})
	notAfter := clk.Now().Add(time.Hour)
	s, err := testgrpc.NewTestServiceClient(shortLived(t, e, proxytest.DeployerID, notAfter)).FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("hi")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("echo: %v", err)
	}
	clk.Advance(time.Hour + time.Second)
	<-e.Backend.Canceled
	want := "credentials expired at " + notAfter.Format(time.RFC3339)
	wantEnded(t, e, func() error { _, err := s.Recv(); return err }, want)
	wantOutcome(t, e, "/grpc.testing.TestService/FullDuplexCall", want)
	if n := e.Backend.Messages.Load(); n != 1 {
		t.Errorf("backend received %d messages, want 1", n)
	}
}

// bearerConn connects with no client certificate; calls carry tok.
func bearerConn(t *testing.T, e *proxytest.Env) *grpc.ClientConn {
	t.Helper()
	return e.ConnTLS(t, &tls.Config{RootCAs: e.CA.Pool(), ServerName: "localhost"})
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// TestTokenLeewaySameOnEveryPath: a token counts until exp plus the leeway,
// no longer and no less, whether it is checked at connection, on a message of
// an open stream or by a stream's timer, and on the data path and the
// control API alike. Before the one rule, a token inside its leeway was
// accepted at connection and by the control API but refused at its first
// proxied message.
func TestTokenLeewaySameOnEveryPath(t *testing.T) {
	keys := testjwt.NewKeys(t)
	e, clk := expiryEnv(t, proxytest.Options{
		ClientAuth: "verify_if_given",
		Identity:   proxytest.JWTIdentity(keys.JWKS(t), "30s"),
		Principals: "    - match: \"*@example.com\"\n      kind: human\n      groups: [sre, auditors]\n",
		Audit:      "  readers: [auditors]\n",
	})
	claims := testjwt.Claims("alice@example.com", clk.Now()) // exp: now + 10m
	exp := clk.Now().Add(10 * time.Minute)
	tok := testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "ed1", claims)
	conn := bearerConn(t, e)
	data := testgrpc.NewTestServiceClient(conn)
	control := healthpb.NewHealthClient(conn)
	ctx := withToken(proxytest.Ctx(t), tok)

	// Past exp, inside the leeway: every path accepts the token.
	clk.Advance(10*time.Minute + 10*time.Second)
	if _, err := data.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("data path inside the leeway: %v", err)
	}
	if _, err := control.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("control API inside the leeway: %v", err)
	}
	w, err := data.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("watch")}})
	if err != nil {
		t.Fatal(err)
	}
	e.Backend.Events <- []byte("event inside the leeway")
	if _, err := w.Recv(); err != nil {
		t.Fatalf("stream inside the leeway: %v", err)
	}
	hw, err := control.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hw.Recv(); err != nil {
		t.Fatalf("health Watch inside the leeway: %v", err)
	}

	// One nanosecond before exp plus the leeway, still accepted everywhere.
	clk.Advance(20*time.Second - time.Nanosecond)
	if _, err := data.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("data path 1ns before exp+leeway: %v", err)
	}
	if _, err := control.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("control API 1ns before exp+leeway: %v", err)
	}

	// At exp plus the leeway: refused everywhere, open streams ended.
	clk.Advance(time.Nanosecond)
	want := "credentials expired at " + exp.Add(30*time.Second).Format(time.RFC3339)
	wantEnded(t, e, func() error { _, err := w.Recv(); return err }, want)
	wantEnded(t, e, func() error { _, err := hw.Recv(); return err }, want)
	_, err = data.EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "data path at exp+leeway", err, codes.Unauthenticated, "token expired")
	_, err = control.Check(ctx, &healthpb.HealthCheckRequest{})
	proxytest.WantCode(t, "control API at exp+leeway", err, codes.Unauthenticated, "token expired")
	wantOutcome(t, e, "/grpc.health.v1.Health/Watch", want)
}

// TestAuditFollowEndsAtExpiry: ztpctl audit export --follow (the Export
// stream with follow) ends with UNAUTHENTICATED when the auditor's
// certificate expires, and records committed afterwards are not sent.
func TestAuditFollowEndsAtExpiry(t *testing.T) {
	e, clk := expiryEnv(t, proxytest.Options{Audit: "  readers: [auditors]\n"})
	notAfter := clk.Now().Add(5 * time.Minute)
	conn := shortLived(t, e, "spiffe://example.org/auditor/ann", notAfter)
	follow, err := ztpv1.NewAuditClient(conn).Export(proxytest.Ctx(t), &ztpv1.ExportRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := follow.Recv(); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	clk.Advance(5*time.Minute + time.Second)
	// A record committed after the expiry must not reach the follower.
	if _, err := e.Dial(t, proxytest.DeployerID).EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	want := "credentials expired at " + notAfter.Format(time.RFC3339)
	for {
		c, err := follow.Recv()
		if err != nil {
			proxytest.WantCode(t, "export --follow after expiry", err, codes.Unauthenticated, want)
			break
		}
		for _, l := range c.GetLines() {
			if strings.Contains(string(l), "EmptyCall") {
				t.Fatalf("the follower got a record committed after its credential expired: %s", l)
			}
		}
	}
	wantOutcome(t, e, "/ztp.v1.Audit/Export", want)
}

// TestReloadEndsStreams: a reload authenticates the principals of open
// streams again. A stream whose principal no rule matches any more, or whose
// classification changed, ends with UNAUTHENTICATED naming the reload; one
// whose principal is classified as before goes on.
func TestReloadEndsStreams(t *testing.T) {
	e, _ := expiryEnv(t, proxytest.Options{Policy: "package ztp\n\nallow := true\n"})
	alice := openWatch(t, e, e.Conn(t, proxytest.AliceID))
	bidi := func(id string) grpc.BidiStreamingClient[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse] {
		s, err := e.Dial(t, id).FullDuplexCall(proxytest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		echo(t, s, "hello")
		return s
	}
	lead := bidi("spiffe://example.org/lead/carol")
	deployer := bidi(proxytest.DeployerID)

	// Carol's groups change.
	e.RewriteConfig(t, func(s string) string {
		return strings.Replace(s, "groups: [sre, sre-leads]", "groups: [sre]", 1)
	})
	if err := e.Server.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, e, func() error { _, err := lead.Recv(); return err }, "reload: principal spiffe://example.org/lead/carol is now classified kind human groups [sre]")

	// Alice's rule goes.
	e.RewriteConfig(t, func(s string) string {
		return strings.Replace(s, `"spiffe://example.org/user/*"`, `"spiffe://example.org/nobody/*"`, 1)
	})
	if err := e.Server.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, e, func() error { _, err := alice.Recv(); return err }, "reload: unauthenticated: identity: principal matches no rule")
	if err := <-e.Backend.WatchEnded; !errors.Is(err, context.Canceled) {
		t.Errorf("alice's backend watch ended with %v, want cancelled", err)
	}
	wantOutcome(t, e, "/grpc.testing.TestService/StreamingOutputCall", "matches no rule")
	wantOutcome(t, e, "/grpc.testing.TestService/FullDuplexCall", "is now classified")

	// The deployer's stream lived through both reloads.
	echo(t, deployer, "after the reloads")
}

// echo sends msg on a FullDuplexCall and checks it comes back.
func echo(t *testing.T, s grpc.BidiStreamingClient[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse], msg string) {
	t.Helper()
	if err := s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(msg)}}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || string(r.GetPayload().GetBody()) != msg {
		t.Fatalf("echo of %q = %v, %v", msg, r, err)
	}
}

// TestReloadRevokesTokenKey: removing a signing key from the JWKS and
// reloading ends the streams its tokens opened.
func TestReloadRevokesTokenKey(t *testing.T) {
	keys := testjwt.NewKeys(t)
	jwks := keys.JWKS(t)
	e, clk := expiryEnv(t, proxytest.Options{
		ClientAuth: "verify_if_given",
		Identity:   proxytest.JWTIdentity(jwks, ""),
		Principals: "    - match: \"*@example.com\"\n      kind: human\n      groups: [sre]\n",
	})
	tok := testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "ed1", testjwt.Claims("alice@example.com", clk.Now()))
	w, err := testgrpc.NewTestServiceClient(bearerConn(t, e)).StreamingOutputCall(withToken(proxytest.Ctx(t), tok), &testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("watch")}})
	if err != nil {
		t.Fatal(err)
	}
	e.Backend.Events <- []byte("before")
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	// The new JWKS keeps the RSA key only.
	rotated := testjwt.WriteJWKS(t, testjwt.Key{Public: &keys.RSA.PublicKey, KID: "rsa1"})
	e.RewriteConfig(t, func(s string) string { return strings.Replace(s, jwks, rotated, 1) })
	if err := e.Server.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, e, func() error { _, err := w.Recv(); return err }, "unknown key id")
}

// TestStreamWithoutFirstMessageRefusedAfterExpiry: a stream opened before the
// expiry whose first message had not come is ended at the expiry, with a deny
// record naming it; a message sent after it is refused, and nothing reaches
// the backend.
func TestStreamWithoutFirstMessageRefusedAfterExpiry(t *testing.T) {
	// A first-message timeout longer than the wait, so that the expiry decides.
	e, clk := expiryEnv(t, proxytest.Options{Limits: "  first_message_timeout: 5m\n"})
	notAfter := clk.Now().Add(time.Minute)
	s, err := testgrpc.NewTestServiceClient(shortLived(t, e, proxytest.DeployerID, notAfter)).FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// The call is open at the proxy before the clock moves: a header-only
	// round trip is not available to the client, so wait for the proxy to
	// register it by its timers (the expiry's and the first message's).
	waitPending(t, clk, 2)
	clk.Advance(2 * time.Minute)
	if err := s.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = s.Recv()
	want := "credentials expired at " + notAfter.Format(time.RFC3339)
	proxytest.WantCode(t, "first message after expiry", err, codes.Unauthenticated, want)
	if n := e.Backend.Calls.Load(); n != 0 {
		t.Errorf("backend handled %d calls, want 0", n)
	}
	denied := waitRecord(t, e, func(r *audit.Record) bool {
		return r.Type == "request" && r.Method == "/grpc.testing.TestService/FullDuplexCall" &&
			r.Decision == "deny" && len(r.Reasons) == 1 && r.Reasons[0] == want
	})
	if denied == nil {
		t.Error("no deny record naming the expiry")
	}
}

// waitPending waits until n timers are pending on clk: the proxy has
// registered the calls the test opened (which it does on its own goroutines).
func waitPending(t *testing.T, clk *testclock.Clock, n int) {
	t.Helper()
	ctx := proxytest.Ctx(t)
	for clk.Pending() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("%d timers pending, want %d", clk.Pending(), n)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestNoMessageAfterExpiryBeforeTimer: the timer may run late (a loaded
// machine); a message the upstream produces after the expiry is still not
// delivered, because each message is checked against the same rule as it
// passes. Here the timer never runs at all.
func TestNoMessageAfterExpiryBeforeTimer(t *testing.T) {
	clk := testclock.New(time.Now().UTC().Truncate(time.Second))
	e := proxytest.Start(t, proxytest.Options{Proxy: func(po *proxy.Options) {
		po.Now = clk.Now
		po.AfterFunc = func(time.Duration, func()) func() bool { return func() bool { return true } }
	}})
	notAfter := clk.Now().Add(time.Minute)
	w := openWatch(t, e, shortLived(t, e, proxytest.DeployerID, notAfter))
	clk.Advance(time.Hour)
	e.Backend.Events <- []byte("event after")
	want := "credentials expired at " + notAfter.Format(time.RFC3339)
	wantEnded(t, e, func() error { _, err := w.Recv(); return err }, want)
	if err := <-e.Backend.WatchEnded; !errors.Is(err, context.Canceled) {
		t.Errorf("backend watch ended with %v, want its context cancelled", err)
	}
	wantOutcome(t, e, "/grpc.testing.TestService/StreamingOutputCall", want)
}
