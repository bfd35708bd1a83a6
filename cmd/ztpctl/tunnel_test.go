package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/internal/testjwt"
	"github.com/ztp-dev/ztp/pki"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// startTunnel runs the tunnel in-process towards env's proxy with the given
// credential flags, and returns a TestService client connected to it in
// plaintext, and the tunnel's log.
func startTunnel(t *testing.T, env *proxytest.Env, creds ...string) (testgrpc.TestServiceClient, *proxytest.SyncBuffer) {
	t.Helper()
	addr, log := serveTunnel(t, env, creds...)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn), log
}

// serveTunnel runs the tunnel in-process towards env's proxy with the given
// credential flags until the test ends, and returns its address and log.
func serveTunnel(t *testing.T, env *proxytest.Env, creds ...string) (string, *proxytest.SyncBuffer) {
	t.Helper()
	return serveTunnelWith(t, env, &tunnelOptions{maxMsg: 4 << 20}, nil, creds...)
}

// serveTunnelWith is serveTunnel with the tunnel's own options (its listen
// address is the one the test picks) and clock (nil: time.Now).
func serveTunnelWith(t *testing.T, env *proxytest.Env, o *tunnelOptions, now func() time.Time, creds ...string) (string, *proxytest.SyncBuffer) {
	t.Helper()
	g := &globalOptions{server: env.Addr, serverName: "localhost", cacert: env.CAFile, now: now}
	for i := 0; i+1 < len(creds); i += 2 {
		switch creds[i] {
		case "--cert":
			g.cert = creds[i+1]
		case "--key":
			g.key = creds[i+1]
		case "--token-file":
			g.tokenFile = creds[i+1]
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &proxytest.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		o.listen = lis.Addr().String()
		done <- runTunnel(ctx, g, o, lis, slog.New(slog.NewTextHandler(log, nil)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runTunnel: %v", err)
		}
	})
	return lis.Addr().String(), log
}

// TestTunnelForwardsEveryKind calls the proxy's backend through the tunnel
// with a plaintext client that has no credentials: the four RPC kinds work,
// metadata, deadline, headers, trailers and status pass both ways, a client's
// own authorization header does not, and the proxy audits the tunnel user.
func TestTunnelForwardsEveryKind(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	cert, key := env.ClientFiles(t, proxytest.DeployerID)
	c, log := startTunnel(t, env, "--cert", cert, "--key", key)
	ctx := proxytest.Ctx(t)

	// Unary, with metadata, a deadline and a header the client must not choose.
	uctx, cancel := context.WithTimeout(ctx, 7*time.Second)
	defer cancel()
	uctx = metadata.AppendToOutgoingContext(uctx, "x-request-id", "r-1", "authorization", "Bearer not-mine")
	var header, trailer metadata.MD
	resp, err := c.UnaryCall(uctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hi")}}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil || string(resp.GetPayload().GetBody()) != "hi" {
		t.Fatalf("UnaryCall through the tunnel = %v, %v", resp, err)
	}
	md := env.Backend.MD()
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "r-1" {
		t.Errorf("backend saw x-request-id %v, want [r-1]", got)
	}
	if got := md.Get("authorization"); len(got) != 0 {
		t.Errorf("backend saw authorization %v: the client's own credentials must not pass the tunnel", got)
	}
	if got := md.Get("x-ztp-principal"); len(got) != 1 || got[0] != proxytest.DeployerID {
		t.Errorf("backend saw x-ztp-principal %v, want the tunnel user %s", got, proxytest.DeployerID)
	}
	if left := env.Backend.DeadlineLeft(); left <= 0 || left > 7*time.Second {
		t.Errorf("backend's deadline = %v, want the client's (at most 7s)", left)
	}
	if header.Get("x-backend-header")[0] != "h1" || len(trailer.Get("x-backend-trailer")) != 1 {
		t.Errorf("header %v, trailer %v: want the backend's x-backend-header and x-backend-trailer", header, trailer)
	}

	// The upstream's status, code and message, comes back as it is.
	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "not now"}})
	proxytest.WantCode(t, "UnaryCall with a status", err, codes.FailedPrecondition, "not now")

	// So does the proxy's own refusal: alice may not upload, but deployer may.
	sc, err := c.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"ab", "cde"} {
		if err := sc.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte(b)}}); err != nil {
			t.Fatal(err)
		}
	}
	in, err := sc.CloseAndRecv() // half-close, then the answer
	if err != nil || in.GetAggregatedPayloadSize() != 5 {
		t.Errorf("StreamingInputCall = %v, %v; want 5 bytes counted", in, err)
	}

	so, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2}, {Size: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := so.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("StreamingOutputCall.Recv: %v", err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("StreamingOutputCall gave %d messages, want 3", n)
	}

	// (Before the bidi call below, which the proxy may still be finishing when
	// the test ends.)
	for _, r := range env.Requests(t, "/grpc.testing.TestService/UnaryCall") {
		if r.Principal.ID != proxytest.DeployerID {
			t.Errorf("audit record %d names %q, want the tunnel user %s", r.Seq, r.Principal.ID, proxytest.DeployerID)
		}
	}

	// Bidi, then the client cancels: the cancellation reaches the backend.
	bctx, bcancel := context.WithCancel(ctx)
	bidi, err := c.FullDuplexCall(bctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
		if m, err := bidi.Recv(); err != nil || len(m.GetPayload().GetBody()) != 1 || m.GetPayload().GetBody()[0] != byte(i) {
			t.Fatalf("FullDuplexCall echo %d = %v, %v", i, m, err)
		}
	}
	bcancel()
	select {
	case <-env.Backend.Canceled:
	case <-ctx.Done():
		t.Fatal("the client's cancellation did not reach the backend through the tunnel")
	}

	if !strings.Contains(log.String(), "identity="+proxytest.DeployerID+" valid_until=") {
		t.Errorf("tunnel's start-up line does not name the identity and its expiry:\n%s", log)
	}
	if !strings.Contains(log.String(), "method=/grpc.testing.TestService/UnaryCall code=FailedPrecondition") {
		t.Errorf("tunnel log does not show the failed call:\n%s", log)
	}
}

// TestTunnelProxyRefusal: a call the policy denies for the tunnel user is
// refused with the proxy's code and reason.
func TestTunnelProxyRefusal(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	cert, key := env.ClientFiles(t, proxytest.AliceID)
	c, _ := startTunnel(t, env, "--cert", cert, "--key", key)
	ctx := proxytest.Ctx(t)
	sc, err := c.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = sc.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}})
	_, err = sc.CloseAndRecv()
	proxytest.WantCode(t, "StreamingInputCall as alice", err, codes.PermissionDenied, "humans may not upload")
}

// TestTunnelTokenReadPerCall: the token file is read for every call, so a
// refreshed token takes effect at once; the proxy's verdict on an expired one
// reaches the client.
func TestTunnelTokenReadPerCall(t *testing.T) {
	keys := testjwt.NewKeys(t)
	env := proxytest.Start(t, proxytest.Options{
		ClientAuth: "verify_if_given",
		Identity:   "  jwt:\n    issuer: " + testjwt.Issuer + "\n    audience: " + testjwt.Audience + "\n    jwks_file: " + keys.JWKS(t) + "\n",
		Principals: "    - match: \"*@example.com\"\n      kind: human\n      groups: [sre]\n",
	})
	tok := filepath.Join(t.TempDir(), "token")
	write := func(claims map[string]any) {
		t.Helper()
		if err := os.WriteFile(tok, []byte(testjwt.Sign(t, jwa.ES256(), keys.EC, "ec1", claims)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(testjwt.Claims("alice@example.com", time.Now()))
	c, _ := startTunnel(t, env, "--token-file", tok)
	ctx := proxytest.Ctx(t)

	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall as alice's token: %v", err)
	}
	write(testjwt.Claims("bob@example.com", time.Now()))
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall as bob's token: %v", err)
	}
	var who []string
	for _, r := range env.Requests(t, "/grpc.testing.TestService/EmptyCall") {
		who = append(who, r.Principal.ID)
	}
	if strings.Join(who, ",") != "alice@example.com,bob@example.com" {
		t.Errorf("audited principals = %v, want alice then bob (the refreshed token)", who)
	}

	expired := testjwt.Claims("bob@example.com", time.Now().Add(-time.Hour))
	write(expired)
	_, err := c.EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall with an expired token", err, codes.Unauthenticated, "token expired")
}

// TestTunnelCertificateReadPerConnection: a new connection to the proxy
// presents the certificate on disk now; one that has expired is named as such.
func TestTunnelCertificateReadPerConnection(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "me.pem"), filepath.Join(dir, "me-key.pem")
	issue := func(o pki.LeafOptions) {
		t.Helper()
		o.CommonName, o.Client = "me", true
		leaf, err := env.CA.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(dir, "me", leaf); err != nil {
			t.Fatal(err)
		}
	}
	// restart drops the tunnel's connection: the proxy comes back on the same
	// address, and the tunnel has to connect (and so hand over its certificate)
	// again.
	var running *proxy.Server // the one restart started last
	restart := func() {
		t.Helper()
		addr := env.Addr
		if running == nil {
			env.Stop(t)
		} else if err := running.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		srv, err := env.NewServer(t)
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(lis)
		env.Server, running = srv, srv
	}
	t.Cleanup(func() {
		if running != nil {
			running.Shutdown(context.Background())
		}
	})
	issue(pki.LeafOptions{URIs: []string{proxytest.DeployerID}})
	c, _ := startTunnel(t, env, "--cert", cert, "--key", key)
	ctx := proxytest.Ctx(t)
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall as deployer: %v", err)
	}

	issue(pki.LeafOptions{URIs: []string{proxytest.AliceID}})
	restart()
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("EmptyCall as alice after the refresh: %v", err)
	}
	recs := env.Requests(t, "/grpc.testing.TestService/EmptyCall")
	if len(recs) == 0 || recs[len(recs)-1].Principal.ID != proxytest.AliceID {
		t.Fatalf("last EmptyCall audited as %+v, want alice (the refreshed certificate)", recs)
	}

	issue(pki.LeafOptions{URIs: []string{proxytest.AliceID}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	restart()
	_, err := c.EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall with an expired certificate", err, codes.Unavailable, "your certificate expired at")
}

// TestTunnelServesTLS: with --listen-cert/--listen-key the local client
// speaks TLS to the tunnel, and a plaintext one gets nowhere.
func TestTunnelServesTLS(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	cert, key := env.ClientFiles(t, proxytest.DeployerID)
	leaf, err := env.CA.Issue(pki.LeafOptions{CommonName: "tunnel", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := pki.WriteFiles(dir, "tunnel", leaf); err != nil {
		t.Fatal(err)
	}
	addr, _ := serveTunnelWith(t, env, &tunnelOptions{maxMsg: 1 << 20, listenCert: filepath.Join(dir, "tunnel.pem"), listenKey: filepath.Join(dir, "tunnel-key.pem")}, nil, "--cert", cert, "--key", key)
	ctx := proxytest.Ctx(t)

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: env.CA.Pool()})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall over TLS to the tunnel: %v", err)
	}
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_, err = testgrpc.NewTestServiceClient(plain).EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "plaintext EmptyCall to a TLS tunnel", err, codes.Unavailable, "")
}

// TestTunnelRenewsExpiredCertificate: the proxy refuses calls on a
// connection whose certificate has expired, however long the connection
// lives; the tunnel then opens a new connection, which presents the
// certificate renewed on disk.
func TestTunnelRenewsExpiredCertificate(t *testing.T) {
	start := time.Now()
	clock := testclock.New(start)
	env := proxytest.Start(t, proxytest.Options{Proxy: func(o *proxy.Options) { o.Now = clock.Now }})
	dir := t.TempDir()
	issue := func(id string, notAfter time.Time) {
		t.Helper()
		leaf, err := env.CA.Issue(pki.LeafOptions{CommonName: "me", URIs: []string{id}, Client: true, NotBefore: start.Add(-time.Minute), NotAfter: notAfter})
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(dir, "me", leaf); err != nil {
			t.Fatal(err)
		}
	}
	issue(proxytest.DeployerID, start.Add(time.Hour))
	addr, log := serveTunnelWith(t, env, &tunnelOptions{maxMsg: 1 << 20}, clock.Now, "--cert", filepath.Join(dir, "me.pem"), "--key", filepath.Join(dir, "me-key.pem"))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := testgrpc.NewTestServiceClient(conn)
	ctx := proxytest.Ctx(t)
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall with the first certificate: %v", err)
	}

	// Renewed on disk (as alice, to tell them apart), then the first one expires.
	issue(proxytest.AliceID, start.Add(2*time.Hour))
	clock.Advance(time.Hour + time.Second)
	if _, err := c.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall after the first certificate expired and was renewed: %v\n%s", err, log)
	}
	var who []string
	for _, r := range env.Requests(t, "/grpc.testing.TestService/EmptyCall") {
		who = append(who, r.Principal.ID)
	}
	if strings.Join(who, ",") != proxytest.DeployerID+","+proxytest.AliceID {
		t.Errorf("audited principals = %v, want deployer then alice (the renewed certificate)", who)
	}
	if !strings.Contains(log.String(), "reconnecting: the certificate presented to the proxy expired") {
		t.Errorf("tunnel log does not say it reconnected:\n%s", log)
	}

	// Not renewed this time: the call fails naming the user's expired certificate.
	clock.Advance(time.Hour)
	_, err = c.EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall after the renewed certificate expired too", err, codes.Unauthenticated, "your certificate expired at")
}

func TestTunnelFlags(t *testing.T) {
	for _, ok := range []tunnelOptions{{listen: "127.0.0.1:0"}, {listen: "[::1]:0"}, {listen: "localhost:0"}, {listen: "127.0.0.2:0"}, {listen: "0.0.0.0:0", allowRemote: true}} {
		if err := ok.checkListen(); err != nil {
			t.Errorf("--listen %s (allow-remote %v) refused: %v", ok.listen, ok.allowRemote, err)
		}
	}
	env := proxytest.Start(t, proxytest.Options{})
	cert, key := env.ClientFiles(t, proxytest.DeployerID)
	conn := []string{"--server", env.Addr, "--cacert", env.CAFile, "--cert", cert, "--key", key, "tunnel"}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "0.0.0.0:0"}, "not a loopback address"},
		{[]string{"--listen", ":0"}, "not a loopback address"},
		{[]string{"--listen", "example.com:0"}, "not a loopback address"},
		{[]string{"--listen", "127.0.0.1"}, "--listen"},
		{[]string{"--listen", "127.0.0.1:0", "--listen-cert", cert}, "--listen-cert and --listen-key"},
	}
	for _, tc := range tests {
		_, _, err := runCtl(t, "", append(conn, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ztpctl tunnel %v = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestExpiredCertificateNamed: every command names the user's own expired or
// not yet valid certificate, instead of failing in the handshake.
func TestExpiredCertificateNamed(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	dir := t.TempDir()
	for name, o := range map[string]pki.LeafOptions{
		"expired": {NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
		"not yet": {NotBefore: time.Now().Add(time.Hour), NotAfter: time.Now().Add(2 * time.Hour)},
	} {
		o.CommonName, o.Client, o.URIs = "me", true, []string{proxytest.AliceID}
		leaf, err := env.CA.Issue(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteFiles(dir, "me", leaf); err != nil {
			t.Fatal(err)
		}
		_, _, err = runCtl(t, "", "--server", env.Addr, "--cacert", env.CAFile, "--cert", filepath.Join(dir, "me.pem"), "--key", filepath.Join(dir, "me-key.pem"), "policy", "version")
		want := map[string]string{"expired": "your certificate expired at", "not yet": "your certificate is not valid before"}[name]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: ztpctl policy version = %v, want %q", name, err, want)
		}
	}
}
