package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// localProxy is a proxy this file starts itself from a config file in a
// proxytest.Env's directory (sharing its certificates, policy, protoset and
// backend), so a test can stop it and start another on the same audit file,
// or configure identity.jwt, which proxytest does not.
type localProxy struct {
	env    *proxytest.Env
	server *proxy.Server
	addr   string
	served chan error
}

// localConfig is the config template: %s are the client_auth mode, extra
// identity keys (jwt:), the backend address and the audit file.
const localConfig = `listen: 127.0.0.1:0
tls:
  cert: proxy.pem
  key: proxy-key.pem
  client_ca: ca.pem
  client_auth: %s
identity:
%s  principals:
    - match: "spiffe://example.org/ns/prod/sa/*"
      kind: automation
      groups: [deployers]
    - match: "spiffe://example.org/user/*"
      kind: human
      groups: [sre]
    - match: "spiffe://example.org/lead/*"
      kind: human
      groups: [sre, sre-leads]
    - match: "*@example.com"
      kind: human
      groups: [sre]
upstreams:
  - name: test
    address: %s
    services: ["grpc.testing.*"]
    descriptors: test.protoset
    tls: { insecure: true }
policy:
  paths: [policies/]
audit:
  path: %s
breakglass:
  max_duration: 1h
  approvals_required: 1
  approver_groups: [sre-leads]
`

func writeLocalConfig(t *testing.T, env *proxytest.Env, clientAuth, identityExtra, auditFile string) string {
	t.Helper()
	file := filepath.Join(env.Dir, "local.yaml")
	yaml := fmt.Sprintf(localConfig, clientAuth, identityExtra, env.Backend.Addr, auditFile)
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func startLocal(t *testing.T, env *proxytest.Env, configFile string, now func() time.Time) *localProxy {
	t.Helper()
	cfg, err := config.Load(configFile)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := proxy.New(ctx, cfg, proxy.Options{Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lp := &localProxy{env: env, server: srv, addr: lis.Addr().String(), served: make(chan error, 1)}
	go func() { lp.served <- srv.Serve(lis) }()
	t.Cleanup(lp.stop)
	return lp
}

// stop drains the proxy and closes its audit file; safe to call twice.
func (lp *localProxy) stop() {
	if lp.server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lp.server.Shutdown(ctx)
	<-lp.served
	lp.server = nil
}

// conn connects with a certificate for id (id == ""): none) and optional
// per-call metadata added by the caller.
func (lp *localProxy) conn(t *testing.T, id string) *grpc.ClientConn {
	t.Helper()
	tc := &tls.Config{RootCAs: lp.env.CA.Pool(), ServerName: "localhost"}
	if id != "" {
		tc.Certificates = []tls.Certificate{lp.env.Issue(t, id).TLS}
	}
	c, err := grpc.NewClient(lp.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestBreakglassSurvivesRestart: grants (active and pending) are in the audit
// file; a new proxy on the same file honours them and records expiries that
// happened while it was down.
func TestBreakglassSurvivesRestart(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	clock := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	cfgFile := writeLocalConfig(t, env, "require", "", "bg.db")
	ctx := proxytest.Ctx(t)

	first := startLocal(t, env, cfgFile, clock.Now)
	bg := func(lp *localProxy, id string) ztpv1.BreakGlassClient {
		return ztpv1.NewBreakGlassClient(lp.conn(t, id))
	}
	active, err := bg(first, proxytest.AliceID).RequestGrant(ctx, &ztpv1.RequestGrantRequest{Reason: "INC-20 restart test", Scope: []string{unaryCall}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bg(first, carolID).ApproveGrant(ctx, &ztpv1.GrantAction{Id: active.GetId()}); err != nil {
		t.Fatal(err)
	}
	pending, err := bg(first, "spiffe://example.org/user/bob").RequestGrant(ctx, &ztpv1.RequestGrantRequest{Reason: "INC-20 pending"})
	if err != nil {
		t.Fatal(err)
	}
	if err := unary(t, testgrpc.NewTestServiceClient(first.conn(t, proxytest.AliceID)), "before restart"); err != nil {
		t.Fatalf("call under the grant before the restart: %v", err)
	}
	first.stop()

	clock.Advance(10 * time.Minute)
	second := startLocal(t, env, cfgFile, clock.Now)
	if err := unary(t, testgrpc.NewTestServiceClient(second.conn(t, proxytest.AliceID)), "after restart"); err != nil {
		t.Fatalf("call under the grant after the restart: %v", err)
	}
	list, err := bg(second, proxytest.AliceID).ListGrants(ctx, &ztpv1.ListGrantsRequest{})
	if err != nil || len(list.GetGrants()) != 2 {
		t.Fatalf("ListGrants after restart = %v, %v; want both grants", list, err)
	}
	if g, err := bg(second, carolID).ApproveGrant(ctx, &ztpv1.GrantAction{Id: pending.GetId()}); err != nil || g.GetState() != "active" {
		t.Fatalf("approving the pending grant after restart = %v, %v; want active", g, err)
	}
	second.stop()

	clock.Advance(time.Hour) // both run out while no proxy runs
	third := startLocal(t, env, cfgFile, clock.Now)
	proxytest.WantCode(t, "call after the grant expired during downtime",
		unary(t, testgrpc.NewTestServiceClient(third.conn(t, proxytest.AliceID)), "x"), codes.PermissionDenied, "ztp: denied")
	third.stop()

	// The trail in the file: each grant's life, with the calls in between.
	var events []string
	err = audit.ScanFile(ctx, filepath.Join(env.Dir, "bg.db"), 1, func(r *audit.Record) error {
		switch {
		case r.Type == audit.TypeBreakglass && r.BreakglassGrant == active.GetId():
			ev, _, _ := strings.Cut(r.Detail, ":")
			events = append(events, ev)
		case r.Type == audit.TypeRequest && r.BreakglassGrant == active.GetId():
			events = append(events, "call")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "requested approved activated call call expired"; strings.Join(events, " ") != want {
		t.Errorf("trail of %s across restarts = %q, want %q", active.GetId(), events, want)
	}
	if res, err := audit.VerifyFile(ctx, filepath.Join(env.Dir, "bg.db")); err != nil || !res.OK() {
		t.Errorf("VerifyFile = %+v, %v; want an intact chain", res, err)
	}
}

// issuer mints tokens for the JWT tests and writes its JWKS.
type issuer struct {
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	other *rsa.PrivateKey // not in the JWKS
	jwks  string
}

func newIssuer(t *testing.T, dir string) *issuer {
	t.Helper()
	is := &issuer{}
	var err error
	if is.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if is.other, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if is.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	for kid, pub := range map[string]any{"rsa1": &is.rsa.PublicKey, "ec1": &is.ec.PublicKey} {
		k, err := jwk.Import(pub)
		if err != nil {
			t.Fatal(err)
		}
		_ = k.Set(jwk.KeyIDKey, kid)
		_ = set.AddKey(k)
	}
	b, _ := json.Marshal(set)
	is.jwks = filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(is.jwks, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return is
}

const (
	jwtIssuer   = "https://idp.example.com"
	jwtAudience = "ztp"
)

func (is *issuer) claims(now time.Time, sub string) map[string]any {
	return map[string]any{"iss": jwtIssuer, "aud": jwtAudience, "sub": sub,
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix()}
}

func signToken(t *testing.T, alg jwa.SignatureAlgorithm, key any, kid string, c map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range c {
		if err := tok.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	h := jws.NewHeaders()
	_ = h.Set(jws.KeyIDKey, kid)
	b, err := jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// forge builds a token the way an attacker would: any header, any MAC.
func forge(header, c map[string]any, mac func([]byte) []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	in := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	var sig []byte
	if mac != nil {
		sig = mac([]byte(in))
	}
	return in + "." + enc.EncodeToString(sig)
}

// TestJWTThroughTheProxy: the token matrix against a real proxy, and
// break-glass by a token-authenticated human with ztpctl --token-file.
func TestJWTThroughTheProxy(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	clock := &fakeClock{now: time.Now().UTC().Truncate(time.Second)}
	is := newIssuer(t, env.Dir)
	cfgFile := writeLocalConfig(t, env, "verify_if_given",
		"  jwt:\n    issuer: "+jwtIssuer+"\n    audience: "+jwtAudience+"\n    jwks_file: jwks.json\n    leeway: 30s\n", "jwt.db")
	lp := startLocal(t, env, cfgFile, clock.Now)
	now := clock.Now()

	with := func(mod func(map[string]any)) map[string]any {
		c := is.claims(now, "alice@example.com")
		mod(c)
		return c
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&is.rsa.PublicKey)
	hs256 := func(in []byte) []byte {
		m := hmac.New(sha256.New, pubDER)
		m.Write(in)
		return m.Sum(nil)
	}
	valid := signToken(t, jwa.RS256(), is.rsa, "rsa1", is.claims(now, "alice@example.com"))

	tests := []struct {
		name     string
		token    string
		cert     string // client certificate id, "" for none
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "valid RS256", token: valid, wantCode: codes.OK},
		{name: "valid ES256", token: signToken(t, jwa.ES256(), is.ec, "ec1", is.claims(now, "alice@example.com")), wantCode: codes.OK},
		{name: "valid token beats an automation certificate", token: valid, cert: proxytest.DeployerID, wantCode: codes.OK},
		{name: "expired", token: signToken(t, jwa.RS256(), is.rsa, "rsa1", with(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })),
			wantCode: codes.Unauthenticated, wantMsg: "token expired"},
		{name: "wrong audience", token: signToken(t, jwa.RS256(), is.rsa, "rsa1", with(func(c map[string]any) { c["aud"] = "another-service" })),
			wantCode: codes.Unauthenticated, wantMsg: "wrong audience"},
		{name: "wrong issuer", token: signToken(t, jwa.RS256(), is.rsa, "rsa1", with(func(c map[string]any) { c["iss"] = "https://evil.example.com" })),
			wantCode: codes.Unauthenticated, wantMsg: "wrong issuer"},
		{name: "bad signature", token: signToken(t, jwa.RS256(), is.other, "rsa1", is.claims(now, "alice@example.com")),
			wantCode: codes.Unauthenticated, wantMsg: "bad signature"},
		{name: "alg none", token: forge(map[string]any{"alg": "none", "kid": "rsa1"}, is.claims(now, "alice@example.com"), nil),
			wantCode: codes.Unauthenticated, wantMsg: `algorithm "none" is not accepted`},
		{name: "HS256 keyed with the public key", token: forge(map[string]any{"alg": "HS256", "kid": "rsa1"}, is.claims(now, "alice@example.com"), hs256),
			wantCode: codes.Unauthenticated, wantMsg: `algorithm "HS256" is not accepted`},
		{name: "unknown kid", token: signToken(t, jwa.RS256(), is.other, "rsa2", is.claims(now, "alice@example.com")),
			wantCode: codes.Unauthenticated, wantMsg: `unknown key id "rsa2"`},
		{name: "invalid token with a valid certificate", token: "not.a.token", cert: proxytest.AliceID,
			wantCode: codes.Unauthenticated, wantMsg: "invalid bearer token"},
		{name: "token posing as a workload", token: signToken(t, jwa.RS256(), is.rsa, "rsa1", is.claims(now, proxytest.DeployerID)),
			wantCode: codes.Unauthenticated, wantMsg: "reserved for certificates"},
		{name: "no token, no certificate", wantCode: codes.Unauthenticated, wantMsg: "no verified client certificate"},
		{name: "certificate only", cert: proxytest.AliceID, wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := env.Backend.Calls.Load()
			ctx := proxytest.Ctx(t)
			if tt.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token)
			}
			_, err := testgrpc.NewTestServiceClient(lp.conn(t, tt.cert)).EmptyCall(ctx, &testgrpc.Empty{})
			proxytest.WantCode(t, "EmptyCall", err, tt.wantCode, tt.wantMsg)
			if tt.wantCode != codes.OK && env.Backend.Calls.Load() != before {
				t.Errorf("a refused call reached the backend")
			}
		})
	}

	// The audit records of the token calls name the token's principal.
	var jwtRecs int
	lp.server.Pipeline().WaitOutcomes()
	err := lp.server.AuditStore().Scan(proxytest.Ctx(t), 1, func(r *audit.Record) error {
		if r.Type == audit.TypeRequest && r.Principal != nil && r.Principal.Authn == "jwt" {
			jwtRecs++
			if r.Principal.ID != "alice@example.com" || r.Principal.Kind != "human" {
				t.Errorf("jwt record principal %+v, want alice@example.com, human", r.Principal)
			}
		}
		return nil
	})
	if err != nil || jwtRecs != 3 {
		t.Errorf("request records by a jwt principal: %d (%v), want 3 (the valid calls)", jwtRecs, err)
	}

	// ztpctl --token-file: a token-authenticated human requests break-glass.
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(valid+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		cmd := newRootCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append([]string{"--server", lp.addr, "--server-name", "localhost", "--cacert", env.CAFile}, args...))
		err := cmd.ExecuteContext(proxytest.Ctx(t))
		return out.String(), err
	}
	out, err := run("--token-file", tokFile, "breakglass", "request", "--reason", "INC-30 via SSO", "--scope", unaryCall)
	if err != nil {
		t.Fatalf("ztpctl --token-file breakglass request: %v", err)
	}
	id, _, _ := strings.Cut(out, "\n")
	cert, key := env.ClientFiles(t, carolID)
	if _, err := run("--cert", cert, "--key", key, "breakglass", "approve", id); err != nil {
		t.Fatalf("approve by carol: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t), "authorization", "Bearer "+valid)
	if _, err := testgrpc.NewTestServiceClient(lp.conn(t, "")).UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall under the grant with a token: %v", err)
	}
	g, err := ztpv1.NewBreakGlassClient(lp.conn(t, carolID)).GetGrant(proxytest.Ctx(t), &ztpv1.GrantAction{Id: id})
	if err != nil || g.GetRequester() != "alice@example.com" || g.GetState() != "active" {
		t.Errorf("GetGrant = %v, %v; want active, requested by alice@example.com", g, err)
	}
	bad := filepath.Join(t.TempDir(), "expired")
	_ = os.WriteFile(bad, []byte(signToken(t, jwa.RS256(), is.rsa, "rsa1", with(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }))), 0o600)
	if _, err := run("--token-file", bad, "breakglass", "list"); err == nil || !strings.Contains(err.Error(), "Unauthenticated") || !strings.Contains(err.Error(), "token expired") {
		t.Errorf("ztpctl with an expired token = %v, want Unauthenticated: token expired", err)
	}
}
