package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testjwt"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestBreakglassSurvivesRestart: grants (active and pending) are in the audit
// file; a new proxy on the same file honours them and records expiries that
// happened while it was down.
func TestBreakglassSurvivesRestart(t *testing.T) {
	env, clock := startBreakglassEnv(t, proxytest.Options{})
	ctx := proxytest.Ctx(t)

	bg := func(id string) ztpv1.BreakGlassClient {
		return ztpv1.NewBreakGlassClient(env.Conn(t, id))
	}
	active, err := bg(proxytest.AliceID).RequestGrant(ctx, &ztpv1.RequestGrantRequest{Reason: "INC-20 restart test", Scope: []string{unaryCall}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bg(carolID).ApproveGrant(ctx, &ztpv1.GrantAction{Id: active.GetId()}); err != nil {
		t.Fatal(err)
	}
	pending, err := bg("spiffe://example.org/user/bob").RequestGrant(ctx, &ztpv1.RequestGrantRequest{Reason: "INC-20 pending"})
	if err != nil {
		t.Fatal(err)
	}
	if err := unary(t, env.Dial(t, proxytest.AliceID), "before restart"); err != nil {
		t.Fatalf("call under the grant before the restart: %v", err)
	}
	env.Stop(t)

	clock.Advance(10 * time.Minute)
	env.Restart(t)
	if err := unary(t, env.Dial(t, proxytest.AliceID), "after restart"); err != nil {
		t.Fatalf("call under the grant after the restart: %v", err)
	}
	list, err := bg(proxytest.AliceID).ListGrants(ctx, &ztpv1.ListGrantsRequest{})
	if err != nil || len(list.GetGrants()) != 2 {
		t.Fatalf("ListGrants after restart = %v, %v; want both grants", list, err)
	}
	if g, err := bg(carolID).ApproveGrant(ctx, &ztpv1.GrantAction{Id: pending.GetId()}); err != nil || g.GetState() != "active" {
		t.Fatalf("approving the pending grant after restart = %v, %v; want active", g, err)
	}
	env.Stop(t)

	clock.Advance(time.Hour) // both run out while no proxy runs
	env.Restart(t)
	proxytest.WantCode(t, "call after the grant expired during downtime",
		unary(t, env.Dial(t, proxytest.AliceID), "x"), codes.PermissionDenied, "ztp: denied")
	env.Stop(t)

	// The trail in the file: each grant's life, with the calls in between.
	var events []string
	err = audit.ScanFile(ctx, env.AuditFile, 1, func(r *audit.Record) error {
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
	if res, err := audit.VerifyFile(ctx, env.AuditFile); err != nil || !res.OK() {
		t.Errorf("VerifyFile = %+v, %v; want an intact chain", res, err)
	}
}

// TestJWTThroughTheProxy: the token matrix against a real proxy, and
// break-glass by a token-authenticated human with ztpctl --token-file.
func TestJWTThroughTheProxy(t *testing.T) {
	keys := testjwt.NewKeys(t)
	other := testjwt.NewKeys(t) // not in the JWKS
	env, clock := startBreakglassEnv(t, proxytest.Options{
		ClientAuth: "verify_if_given",
		Identity:   proxytest.JWTIdentity(keys.JWKS(t), "30s"),
		Principals: "    - match: \"*@example.com\"\n      kind: human\n      groups: [sre]\n",
	})
	now := clock.Now()

	claims := func(sub string) map[string]any { return testjwt.Claims(sub, now) }
	with := func(mod func(map[string]any)) map[string]any {
		c := claims("alice@example.com")
		mod(c)
		return c
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&keys.RSA.PublicKey)
	valid := testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", claims("alice@example.com"))

	tests := []struct {
		name     string
		token    string
		cert     string // client certificate id, "" for none
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "valid RS256", token: valid, wantCode: codes.OK},
		{name: "valid ES256", token: testjwt.Sign(t, jwa.ES256(), keys.EC, "ec1", claims("alice@example.com")), wantCode: codes.OK},
		{name: "valid token beats an automation certificate", token: valid, cert: proxytest.DeployerID, wantCode: codes.OK},
		{name: "expired", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })),
			wantCode: codes.Unauthenticated, wantMsg: "token expired"},
		{name: "wrong audience", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["aud"] = "another-service" })),
			wantCode: codes.Unauthenticated, wantMsg: "wrong audience"},
		{name: "wrong issuer", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["iss"] = "https://evil.example.com" })),
			wantCode: codes.Unauthenticated, wantMsg: "wrong issuer"},
		{name: "bad signature", token: testjwt.Sign(t, jwa.RS256(), other.RSA, "rsa1", claims("alice@example.com")),
			wantCode: codes.Unauthenticated, wantMsg: "bad signature"},
		{name: "alg none", token: testjwt.HandMade(map[string]any{"alg": "none", "kid": "rsa1"}, claims("alice@example.com"), nil),
			wantCode: codes.Unauthenticated, wantMsg: `algorithm "none" is not accepted`},
		{name: "HS256 keyed with the public key", token: testjwt.HandMade(map[string]any{"alg": "HS256", "kid": "rsa1"}, claims("alice@example.com"), testjwt.HMAC(pubDER)),
			wantCode: codes.Unauthenticated, wantMsg: `algorithm "HS256" is not accepted`},
		{name: "unknown kid", token: testjwt.Sign(t, jwa.RS256(), other.RSA, "rsa2", claims("alice@example.com")),
			wantCode: codes.Unauthenticated, wantMsg: `unknown key id "rsa2"`},
		{name: "invalid token with a valid certificate", token: "not.a.token", cert: proxytest.AliceID,
			wantCode: codes.Unauthenticated, wantMsg: "invalid bearer token"},
		{name: "token posing as a workload", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", claims(proxytest.DeployerID)),
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
			_, err := env.Dial(t, tt.cert).EmptyCall(ctx, &testgrpc.Empty{})
			proxytest.WantCode(t, "EmptyCall", err, tt.wantCode, tt.wantMsg)
			if tt.wantCode != codes.OK && env.Backend.Calls.Load() != before {
				t.Errorf("a refused call reached the backend")
			}
		})
	}

	// The audit records of the token calls name the token's principal.
	var jwtRecs int
	for _, r := range env.Records(t) {
		if r.Type == audit.TypeRequest && r.Principal != nil && r.Principal.Authn == "jwt" {
			jwtRecs++
			if r.Principal.ID != "alice@example.com" || r.Principal.Kind != "human" {
				t.Errorf("jwt record principal %+v, want alice@example.com, human", r.Principal)
			}
		}
	}
	if jwtRecs != 3 {
		t.Errorf("request records by a jwt principal: %d, want 3 (the valid calls)", jwtRecs)
	}

	// ztpctl --token-file: a token-authenticated human requests break-glass.
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(valid+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := ztpctl(t, env, "", "--token-file", tokFile, "breakglass", "request", "--reason", "INC-30 via SSO", "--scope", unaryCall)
	if err != nil {
		t.Fatalf("ztpctl --token-file breakglass request: %v", err)
	}
	id, _, _ := strings.Cut(out, "\n")
	if _, err := ztpctl(t, env, carolID, "breakglass", "approve", id); err != nil {
		t.Fatalf("approve by carol: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t), "authorization", "Bearer "+valid)
	if _, err := env.Dial(t, "").UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall under the grant with a token: %v", err)
	}
	g, err := ztpv1.NewBreakGlassClient(env.Conn(t, carolID)).GetGrant(proxytest.Ctx(t), &ztpv1.GrantAction{Id: id})
	if err != nil || g.GetRequester() != "alice@example.com" || g.GetState() != "active" {
		t.Errorf("GetGrant = %v, %v; want active, requested by alice@example.com", g, err)
	}
	bad := filepath.Join(t.TempDir(), "expired")
	_ = os.WriteFile(bad, []byte(testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }))), 0o600)
	if _, err := ztpctl(t, env, "", "--token-file", bad, "breakglass", "list"); err == nil || !strings.Contains(err.Error(), "Unauthenticated") || !strings.Contains(err.Error(), "token expired") {
		t.Errorf("ztpctl with an expired token = %v, want Unauthenticated: token expired", err)
	}
}

// TestOnePersonCertAndToken: with a principal rule naming the person behind a
// token, a lead who requested break-glass with her certificate cannot approve
// it with her SSO token.
func TestOnePersonCertAndToken(t *testing.T) {
	keys := testjwt.NewKeys(t)
	env, clock := startBreakglassEnv(t, proxytest.Options{
		ClientAuth: "verify_if_given",
		Identity:   proxytest.JWTIdentity(keys.JWKS(t), ""),
		// carol@example.com is the person spiffe://example.org/lead/carol, whose
		// certificate the default rules classify as a lead.
		Principals: "    - match: \"*@example.com\"\n      kind: human\n      groups: [sre, sre-leads]\n      person: \"spiffe://example.org/lead/{*}\"\n",
	})
	out, err := ztpctl(t, env, carolID, "breakglass", "request", "--reason", "INC-31", "--scope", unaryCall)
	if err != nil {
		t.Fatalf("request by carol's certificate: %v", err)
	}
	id, _, _ := strings.Cut(out, "\n")
	tokFile := filepath.Join(t.TempDir(), "token")
	token := testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", testjwt.Claims("carol@example.com", clock.Now()))
	if err := os.WriteFile(tokFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ztpctl(t, env, "", "--token-file", tokFile, "breakglass", "approve", id)
	if err == nil || !strings.Contains(err.Error(), "self-approval refused") {
		t.Fatalf("approve with carol's token = %v, want self-approval refused", err)
	}
	g, err := ztpv1.NewBreakGlassClient(env.Conn(t, carolID)).GetGrant(proxytest.Ctx(t), &ztpv1.GrantAction{Id: id})
	if err != nil || g.GetState() != "pending" || len(g.GetApprovals()) != 0 {
		t.Errorf("GetGrant = %v, %v; want pending without approvals", g, err)
	}
}
