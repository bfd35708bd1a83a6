package gobgp_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/internal/exampletest"
	"github.com/ztp-dev/ztp/policy"
)

const policyDir = "policies"

func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestPolicyRegoTests runs the test_ rules of policies/*_test.rego as the proxy runs them
// at load, with the budget limits of the committed ztp.yaml as data.ztp_config.
func TestPolicyRegoTests(t *testing.T) {
	cfg, err := config.LoadOffline("ztp.yaml")
	if err != nil {
		t.Fatalf("config.LoadOffline(ztp.yaml): %v", err)
	}
	exampletest.RunRegoTests(t, policyDir, cfg.PolicyData(), 20)
}

// TestPolicyFormatted keeps the policy files as `opa fmt` writes them.
func TestPolicyFormatted(t *testing.T) {
	exampletest.CheckRegoFormatted(t, policyDir, 3)
}

// TestPolicyVerdicts evaluates the policy as the proxy loads it (test files left out, the
// budget limits of the committed ztp.yaml as data.ztp_config) and runs the result through
// policy.Decide, so that what the Rego tests cannot see — break-glass overriding deny but
// never forbid — is pinned down on requests as the proxy renders them.
func TestPolicyVerdicts(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	// Offline: the certificates ztp.yaml names are minted only by the tests that serve.
	cfg, err := config.LoadOffline("ztp.yaml")
	if err != nil {
		t.Fatalf("config.LoadOffline(ztp.yaml): %v", err)
	}
	e, err := policy.Load(ctx, policy.Options{Paths: []string{policyDir}, Config: cfg.PolicyData()})
	if err != nil {
		t.Fatalf("policy.Load(%s): %v", policyDir, err)
	}
	if got, want := slices.Sorted(maps.Keys(e.Modules())), []string{"policies/budgets.rego", "policies/gobgp.rego"}; !slices.Equal(got, want) {
		t.Fatalf("modules loaded for the proxy = %v, want %v (no *_test.rego)", got, want)
	}
	const (
		injector = `{"id":"spiffe://example.org/ns/prod/sa/injector","kind":"automation","groups":["route-injectors"],"authn":"mtls"}`
		alice    = `{"id":"spiffe://example.org/user/alice","kind":"human","groups":["sre"],"authn":"mtls"}`
	)
	// What `gobgp global rib add|del PREFIX -a ipv4` sends, as protojson leaves zero
	// values out; the decoder puts them back (prefixLen 0 of the default route).
	path := func(prefix string, length int) string {
		l := ""
		if length != 0 {
			l = `,"prefixLen":` + strings.TrimSpace(string(must(json.Marshal(length))))
		}
		return `{"nlri":{"@type":"type.googleapis.com/apipb.IPAddressPrefix","prefix":"` + prefix + `"` + l + `},` +
			`"pattrs":[{"@type":"type.googleapis.com/apipb.OriginAttribute"},{"@type":"type.googleapis.com/apipb.NextHopAttribute","nextHop":"0.0.0.0"}],` +
			`"family":{"afi":"AFI_IP","safi":"SAFI_UNICAST"}}`
	}
	tests := []struct {
		name      string
		principal string
		rpc       string
		request   string // protojson as a client sends it; "null" means undecoded
		grant     string
		want      policy.Verdict
		budgets   []policy.Budget
	}{
		{
			name: "human lists the table", principal: alice, rpc: "ListPath", request: `{"family":{"afi":"AFI_IP","safi":"SAFI_UNICAST"}}`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
		{
			name: "injector adds an allowed prefix", principal: injector, rpc: "AddPath", request: `{"path":` + path("10.100.1.0", 24) + `}`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
		{
			name: "injector withdraws an allowed prefix", principal: injector, rpc: "DeletePath", request: `{"path":` + path("10.100.1.0", 24) + `}`,
			want:    policy.Verdict{Decision: policy.DecisionAllow},
			budgets: []policy.Budget{{Key: "withdraw:gobgp", Cost: 1}},
		},
		{
			name: "injector adds a prefix outside the list", principal: injector, rpc: "AddPath", request: `{"path":` + path("10.200.1.0", 24) + `}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{`route 10.200.1.0/24 is outside the allow-list {"10.100.0.0/16", "2001:db8:100::/48"}`}},
		},
		{
			name: "default route without prefixLen", principal: injector, rpc: "AddPath", request: `{"path":` + path("0.0.0.0", 0) + `}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"announcing a default route (prefix length 0) is forbidden"}},
		},
		{
			name: "default route under break-glass, with a non-canonical type URL", principal: alice, rpc: "AddPath", grant: "bg-1",
			request: strings.Replace(`{"path":`+path("0.0.0.0", 0)+`}`, "type.googleapis.com/apipb.IPAddressPrefix", "evil.example/apipb.IPAddressPrefix", 1),
			want:    policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"announcing a default route (prefix length 0) is forbidden"}},
		},
		{
			name: "human route change under break-glass", principal: alice, rpc: "AddPath", grant: "bg-2", request: `{"path":` + path("192.0.2.0", 24) + `}`,
			want: policy.Verdict{Decision: policy.DecisionAllow, Grant: "bg-2", Reasons: []string{"human changes need break-glass", `route 192.0.2.0/24 is outside the allow-list {"10.100.0.0/16", "2001:db8:100::/48"}`}},
		},
		{
			name: "withdraw everything under break-glass costs the whole budget", principal: alice, rpc: "DeletePath", grant: "bg-3", request: `{"family":{"afi":"AFI_IP","safi":"SAFI_UNICAST"}}`,
			want:    policy.Verdict{Decision: policy.DecisionAllow, Grant: "bg-3", Reasons: []string{"human changes need break-glass", "withdrawing every route (DeletePath without a path) needs break-glass"}},
			budgets: []policy.Budget{{Key: "withdraw:gobgp", Cost: 5}},
		},
		{
			name: "neighbor add", principal: alice, rpc: "AddPeer", request: `{"peer":{"conf":{"neighborAddress":"192.0.2.2","peerAsn":65002}}}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"/apipb.GobgpApi/AddPeer needs break-glass", "human changes need break-glass"}},
		},
		{
			name: "neighbor add under break-glass", principal: alice, rpc: "AddPeer", grant: "bg-4", request: `{"peer":{"conf":{"neighborAddress":"192.0.2.2","peerAsn":65002}}}`,
			want: policy.Verdict{Decision: policy.DecisionAllow, Grant: "bg-4", Reasons: []string{"/apipb.GobgpApi/AddPeer needs break-glass", "human changes need break-glass"}},
		},
		{
			name: "StopBgp under break-glass", principal: alice, rpc: "StopBgp", grant: "bg-5", request: `{}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"StopBgp is forbidden"}},
		},
		{
			name: "undecodable AddPath under break-glass", principal: alice, rpc: "AddPath", grant: "bg-6", request: `null`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"route change with an unreadable request is forbidden"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			input := proxyInput(t, tc.principal, tc.rpc, tc.request, tc.grant)
			res, err := e.Eval(ctx, input)
			got := policy.Decide(res, err, policy.Enforce, tc.grant)
			if got.Decision != tc.want.Decision || got.Grant != tc.want.Grant || !slices.Equal(got.Reasons, tc.want.Reasons) {
				t.Errorf("Decide(Eval(%s %s %s), grant %q) = %+v, want %+v", tc.principal, tc.rpc, tc.request, tc.grant, got, tc.want)
			}
			if err == nil && !slices.Equal(res.Budgets, tc.budgets) {
				t.Errorf("budgets of %s %s = %+v, want %+v", tc.rpc, tc.request, res.Budgets, tc.budgets)
			}
		})
	}
}

// proxyInput builds the input the proxy evaluates for one request (README, "the policy
// contract"): request is the protojson a client sends, encoded to protobuf and decoded
// again by the proxy's own decoder with gobgp.protoset, so that zero values are filled in
// and Any type URLs made canonical exactly as in production. request "null" is a message
// the proxy could not decode; grant is the active break-glass grant, if any.
func proxyInput(t testing.TB, principal, rpc, request, grant string) map[string]any {
	t.Helper()
	if request == "null" {
		return recordInput(t, principal, rpc, nil, grant)
	}
	b, err := decode.EncodeJSON(testCtx(t, 10*time.Second), protoset(t), "/apipb.GobgpApi/"+rpc, []byte(request))
	if err != nil {
		t.Fatalf("EncodeJSON(%s, %s): %v", rpc, request, err)
	}
	req, unknown, ok := decodeRequest(t, rpc, b)
	if !ok || len(unknown) > 0 {
		t.Fatalf("decoding %s %s: %v, unknown %v, ok %v", rpc, request, req, unknown, ok)
	}
	return recordInput(t, principal, rpc, req, grant)
}

// decodeRequest decodes the protobuf bytes of an apipb.GobgpApi request as the proxy does.
func decodeRequest(t testing.TB, rpc string, b []byte) (req map[string]any, unknown []string, ok bool) {
	t.Helper()
	req, unknown, _, err := decode.NewDecoder(protoset(t)).DecodeUnknown(testCtx(t, 10*time.Second), "/apipb.GobgpApi/"+rpc, b)
	ok = err == nil
	if ok && req == nil {
		req = map[string]any{} // an all-default message, as the proxy passes it
	}
	return req, unknown, ok
}

// recordInput is the input for a decoded request (nil: not decodable), built by the
// builder the proxy and replay share.
func recordInput(t testing.TB, principal, rpc string, req map[string]any, grant string) map[string]any {
	t.Helper()
	var p audit.Principal
	if err := json.Unmarshal([]byte(principal), &p); err != nil {
		t.Fatal(err)
	}
	rec := &audit.Record{Time: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Type: audit.TypeRequest, Principal: &p, Method: "/apipb.GobgpApi/" + rpc, Upstream: "gobgp", BreakglassGrant: grant}
	if req != nil {
		var err error
		if rec.Request, err = json.Marshal(req); err != nil {
			t.Fatal(err)
		}
		rec.RequestDecoded = true
	}
	in, err := policy.RecordInput(rec, rpc == "AddPathStream", strings.HasPrefix(rpc, "List") || rpc == "WatchEvent")
	if err != nil {
		t.Fatalf("RecordInput: %v", err)
	}
	return in
}

var loadedProtoset struct {
	once sync.Once
	ps   *decode.Protoset
	err  error
}

func protoset(t testing.TB) *decode.Protoset {
	t.Helper()
	loadedProtoset.once.Do(func() { loadedProtoset.ps, loadedProtoset.err = decode.LoadProtoset("gobgp.protoset") })
	if loadedProtoset.err != nil {
		t.Fatal(loadedProtoset.err)
	}
	return loadedProtoset.ps
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
