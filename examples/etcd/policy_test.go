package etcd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestPolicyRegoTests runs the test_ rules of policies/*_test.rego with OPA's tester and
// the capabilities the proxy compiles with.
func TestPolicyRegoTests(t *testing.T) {
	exampletest.RunRegoTests(t, policyDir, nil, 15)
}

// TestPolicyFormatted keeps the policy files as `opa fmt` writes them, so a reviewer's
// diff shows changes in meaning, not layout.
func TestPolicyFormatted(t *testing.T) {
	exampletest.CheckRegoFormatted(t, policyDir, 2)
}

// TestPolicyVerdicts evaluates the policy as the proxy loads it (test files left out) and
// runs the result through policy.Decide, so the interplay the Rego tests cannot see —
// break-glass overriding deny but never forbid — is pinned down too.
func TestPolicyVerdicts(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	e, err := policy.Load(ctx, policy.Options{Paths: []string{policyDir}})
	if err != nil {
		t.Fatalf("policy.Load(%s): %v", policyDir, err)
	}
	if got, want := slices.Sorted(maps.Keys(e.Modules())), []string{"policies/budgets.rego", "policies/etcd.rego"}; !slices.Equal(got, want) {
		t.Fatalf("modules loaded for the proxy = %v, want %v (no *_test.rego)", got, want)
	}
	const (
		wipe125  = "the call would remove 125 keys; at most 50 may go in one call"
		deployer = `{"id":"spiffe://example.org/ns/prod/sa/deployer","kind":"automation","groups":["deployers"],"authn":"mtls"}`
		alice    = `{"id":"spiffe://example.org/user/alice","kind":"human","groups":["sre"],"authn":"mtls"}`
	)
	tests := []struct {
		name      string
		principal string
		method    string
		request   string // JSON; "null" means undecoded
		grant     string
		want      policy.Verdict
	}{
		{
			name: "human get", principal: alice, method: "/etcdserverpb.KV/Range", request: `{"key":"Zm9v"}`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
		{
			name: "deployer put", principal: deployer, method: "/etcdserverpb.KV/Put", request: `{"key":"Zm9v","value":"YmFy"}`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
		{
			name: "deployer lease keep-alive", principal: deployer, method: "/etcdserverpb.Lease/LeaseKeepAlive", request: `{"ID":"7587862072907233292"}`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
		{
			name: "human put", principal: alice, method: "/etcdserverpb.KV/Put", request: `{"key":"Zm9v","value":"YmFy"}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"human writes need break-glass"}},
		},
		{
			name: "human put under break-glass", principal: alice, method: "/etcdserverpb.KV/Put", request: `{"key":"Zm9v","value":"YmFy"}`, grant: "bg-1",
			want: policy.Verdict{Decision: policy.DecisionAllow, Reasons: []string{"human writes need break-glass"}, Grant: "bg-1"},
		},
		{
			name: "keyspace wipe by automation", principal: deployer, method: "/etcdserverpb.KV/DeleteRange", request: `{"key":"AA==","rangeEnd":"AA=="}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{wipe125}},
		},
		{
			name: "keyspace wipe spelt \\x01..\\xff\\xff\\xff\\xff", principal: deployer, method: "/etcdserverpb.KV/DeleteRange", request: `{"key":"AQ==","rangeEnd":"/////w=="}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{wipe125}},
		},
		{
			name: "keyspace wipe under break-glass", principal: alice, method: "/etcdserverpb.KV/DeleteRange", request: `{"key":"AQ==","rangeEnd":"/////w=="}`, grant: "bg-2",
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{wipe125}},
		},
		{
			name: "small range delete by automation", principal: deployer, method: "/etcdserverpb.KV/DeleteRange", request: `{"key":"Zm9v","rangeEnd":"Zm9w"}`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
		{
			name: "human bulk read", principal: alice, method: "/etcdserverpb.KV/Range", request: `{"key":"AA==","rangeEnd":"AA=="}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"reading 125 keys at once needs break-glass (more than 100)"}},
		},
		{
			name: "human bulk read under break-glass", principal: alice, method: "/etcdserverpb.KV/Range", request: `{"key":"AA==","rangeEnd":"AA=="}`, grant: "bg-5",
			want: policy.Verdict{Decision: policy.DecisionAllow, Reasons: []string{"reading 125 keys at once needs break-glass (more than 100)"}, Grant: "bg-5"},
		},
		{
			name: "deployer revokes a lease", principal: deployer, method: "/etcdserverpb.Lease/LeaseRevoke", request: `{"ID":"7587862072907233292"}`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
		{
			name: "member remove by automation", principal: deployer, method: "/etcdserverpb.Cluster/MemberRemove", request: `{"ID":"42"}`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"/etcdserverpb.Cluster/MemberRemove needs break-glass"}},
		},
		{
			name: "member remove under break-glass", principal: alice, method: "/etcdserverpb.Cluster/MemberRemove", request: `{"ID":"42"}`, grant: "bg-3",
			want: policy.Verdict{Decision: policy.DecisionAllow, Reasons: []string{"/etcdserverpb.Cluster/MemberRemove needs break-glass", "human writes need break-glass"}, Grant: "bg-3"},
		},
		{
			// A put may attach a key to a lease: without the request, what it removes is unknown.
			name: "undecoded put", principal: deployer, method: "/etcdserverpb.KV/Put", request: `null`,
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"/etcdserverpb.KV/Put with an unreadable request is forbidden"}},
		},
		{
			name: "undecoded delete under break-glass", principal: alice, method: "/etcdserverpb.KV/DeleteRange", request: `null`, grant: "bg-4",
			want: policy.Verdict{Decision: policy.DecisionDeny, Reasons: []string{"/etcdserverpb.KV/DeleteRange with an unreadable request is forbidden"}},
		},
		{
			name: "undecoded watch", principal: alice, method: "/etcdserverpb.Watch/Watch", request: `null`,
			want: policy.Verdict{Decision: policy.DecisionAllow},
		},
	}
	etcd := newFakeEtcd(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			input := proxyInput(t, tc.principal, tc.method, tc.request)
			res, err := e.Eval(policy.WithQueries(ctx, policy.NewQueries(etcd, policy.QueryLimits{Max: 64})), input)
			got := policy.Decide(res, err, policy.Enforce, tc.grant)
			if got.Decision != tc.want.Decision || got.Grant != tc.want.Grant || !slices.Equal(got.Reasons, tc.want.Reasons) {
				t.Errorf("Decide(Eval(%s %s %s), grant %q) = %+v, want %+v", tc.principal, tc.method, tc.request, tc.grant, got, tc.want)
			}
		})
	}
}

// proxyInput builds the input document the proxy builds (README, "the policy contract"),
// through JSON so that numbers are json.Number as in the proxy. request "null" is a
// message the proxy could not decode.
func proxyInput(t *testing.T, principal, method, request string) map[string]any {
	t.Helper()
	service, rpc, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	doc, err := json.Marshal(map[string]any{
		"principal":       json.RawMessage(principal),
		"method":          method,
		"service":         service,
		"rpc":             rpc,
		"upstream":        "etcd",
		"request":         json.RawMessage(request),
		"request_decoded": request != "null",
		"stream":          map[string]any{"client_streaming": false, "server_streaming": false, "message_index": 0},
		"metadata":        map[string]any{},
		"breakglass":      map[string]any{"active": false},
		"time":            "2026-11-26T10:00:00Z",
	})
	if err != nil {
		t.Fatalf("input for %s %s: %v", method, request, err)
	}
	var in map[string]any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("input %s: %v", doc, err)
	}
	return in
}
