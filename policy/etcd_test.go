package policy

import (
	"maps"
	"slices"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

const (
	deployerID = "spiffe://example.org/ns/prod/sa/deployer"
	aliceID    = "spiffe://example.org/user/alice"
)

// TestEtcdPolicy drives the example etcd policy through Eval and Decide, the way the proxy
// does for each message.
func TestEtcdPolicy(t *testing.T) {
	e := loadEtcd(t)
	deployer := func(method string, req any) map[string]any {
		return etcdInput(t, deployerID, "automation", []string{"deployers"}, method, req)
	}
	alice := func(method string, req any) map[string]any {
		return etcdInput(t, aliceID, "human", []string{"sre"}, method, req)
	}
	observer := func(method string, req any) map[string]any {
		return etcdInput(t, "spiffe://example.org/ns/prod/sa/observer", "automation", []string{"observers"}, method, req)
	}
	wipe := map[string]any{"key": "AA==", "rangeEnd": "AA=="}
	put := map[string]any{"key": "Zm9v", "value": "YmFy"}

	tests := []struct {
		name    string
		input   map[string]any
		mode    Mode
		grant   string
		want    Verdict
		budgets []Budget
	}{
		{
			name:  "human reads",
			input: alice("/etcdserverpb.KV/Range", map[string]any{"key": "Zm9v"}),
			want:  Verdict{Decision: DecisionAllow},
		},
		{
			name:  "human watch stream message",
			input: alice("/etcdserverpb.Watch/Watch", map[string]any{"createRequest": map[string]any{"key": "Zm9v"}}),
			want:  Verdict{Decision: DecisionAllow},
		},
		{
			name:  "deployer puts",
			input: deployer("/etcdserverpb.KV/Put", put),
			want:  Verdict{Decision: DecisionAllow},
		},
		{
			name:  "deployer keeps a lease alive",
			input: deployer("/etcdserverpb.Lease/LeaseKeepAlive", map[string]any{"ID": "7587862072907233292"}),
			want:  Verdict{Decision: DecisionAllow},
		},
		{
			name:  "human put denied",
			input: alice("/etcdserverpb.KV/Put", put),
			want:  Verdict{Decision: DecisionDeny, Reasons: []string{"human writes need break-glass"}},
		},
		{
			name:  "human put under break-glass allowed, policy verdict recorded",
			input: alice("/etcdserverpb.KV/Put", put),
			grant: "bg-1",
			want:  Verdict{Decision: DecisionAllow, Reasons: []string{"human writes need break-glass"}, Grant: "bg-1"},
		},
		{
			name:  "human put in dry run",
			input: alice("/etcdserverpb.KV/Put", put),
			mode:  DryRun,
			want:  Verdict{Decision: DecisionDryRunDeny, Reasons: []string{"human writes need break-glass"}},
		},
		{
			name:  "automation outside deployers not allowed",
			input: observer("/etcdserverpb.KV/Put", put),
			want:  Verdict{Decision: DecisionDeny, Reasons: []string{ReasonNotAllowed}},
		},
		{
			name:  "keyspace wipe forbidden for automation",
			input: deployer("/etcdserverpb.KV/DeleteRange", wipe),
			want:  Verdict{Decision: DecisionDeny, Reasons: []string{"deleting the whole keyspace is forbidden"}},
		},
		{
			name:  "break-glass does not override forbid",
			input: alice("/etcdserverpb.KV/DeleteRange", wipe),
			grant: "bg-2",
			want:  Verdict{Decision: DecisionDeny, Reasons: []string{"deleting the whole keyspace is forbidden"}},
		},
		{
			name:  "forbid in dry run is only recorded",
			input: alice("/etcdserverpb.KV/DeleteRange", wipe),
			mode:  DryRun,
			want:  Verdict{Decision: DecisionDryRunDeny, Reasons: []string{"deleting the whole keyspace is forbidden"}},
		},
		{
			name:  "human prefix delete under break-glass",
			input: alice("/etcdserverpb.KV/DeleteRange", map[string]any{"key": "Zm9v", "rangeEnd": "Zm9w"}),
			grant: "bg-3",
			want:  Verdict{Decision: DecisionAllow, Reasons: []string{"human writes need break-glass"}, Grant: "bg-3"},
		},
		{
			name:  "undecodable put denied",
			input: deployer("/etcdserverpb.KV/Put", nil),
			want:  Verdict{Decision: DecisionDeny, Reasons: []string{"request not decoded: mutating methods need a readable request"}},
		},
		{
			name:  "undecodable delete forbidden even under break-glass",
			input: alice("/etcdserverpb.KV/DeleteRange", nil),
			grant: "bg-4",
			want:  Verdict{Decision: DecisionDeny, Reasons: []string{"DeleteRange with an unreadable request is forbidden"}},
		},
		{
			name:  "undecodable read allowed",
			input: alice("/etcdserverpb.KV/Range", nil),
			want:  Verdict{Decision: DecisionAllow},
		},
		{
			name:    "member remove denied to automation",
			input:   deployer("/etcdserverpb.Cluster/MemberRemove", map[string]any{"ID": "42"}),
			want:    Verdict{Decision: DecisionDeny, Reasons: []string{"member remove needs break-glass"}},
			budgets: []Budget{{Key: "member-remove:etcd", Cost: 1}},
		},
		{
			name:    "member remove under break-glass",
			input:   alice("/etcdserverpb.Cluster/MemberRemove", map[string]any{"ID": "42"}),
			grant:   "bg-5",
			want:    Verdict{Decision: DecisionAllow, Reasons: []string{"human writes need break-glass", "member remove needs break-glass"}, Grant: "bg-5"},
			budgets: []Budget{{Key: "member-remove:etcd", Cost: 1}},
		},
		{
			name:  "read under break-glass records that the policy allows",
			input: alice("/etcdserverpb.KV/Range", map[string]any{"key": "Zm9v"}),
			grant: "bg-6",
			want:  Verdict{Decision: DecisionAllow, Reasons: []string{ReasonPolicyAllows}, Grant: "bg-6"},
		},
		{
			name:  "unknown method is a write",
			input: deployer("/etcdserverpb.Maintenance/Defragment", map[string]any{}),
			want:  Verdict{Decision: DecisionDeny, Reasons: []string{ReasonNotAllowed}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mode := tc.mode
			if mode == "" {
				mode = Enforce
			}
			res, err := e.Eval(testCtx(t), tc.input)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			got := Decide(res, nil, mode, tc.grant)
			if !verdictEqual(got, tc.want) {
				t.Errorf("Decide(%+v, nil, %q, %q) = %+v, want %+v", res, mode, tc.grant, got, tc.want)
			}
			if !slices.Equal(res.Budgets, tc.budgets) {
				t.Errorf("Budgets = %v, want %v", res.Budgets, tc.budgets)
			}
		})
	}
}

func verdictEqual(a, b Verdict) bool {
	return a.Decision == b.Decision && a.Grant == b.Grant && slices.Equal(a.Reasons, b.Reasons)
}

// TestEtcdRegoTests runs the policy's own test_ rules the way ztpctl policy test will: the
// modules from Load with Tests set, the same data and the same capabilities.
func TestEtcdRegoTests(t *testing.T) {
	ctx := testCtx(t)
	e, err := Load(ctx, Options{Paths: []string{"testdata/etcd"}, Tests: true})
	if err != nil {
		t.Fatalf("Load(Tests: true): %v", err)
	}
	modules := e.Modules()
	if _, ok := modules["testdata/etcd/etcd_test.rego"]; !ok {
		t.Fatalf("Modules() = %v, want it to include testdata/etcd/etcd_test.rego", slices.Sorted(maps.Keys(modules)))
	}
	store := inmem.NewFromObject(e.Data())
	txn := storage.NewTransactionOrDie(ctx, store)
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(Capabilities())).
		SetStore(store).
		SetModules(modules).
		RaiseBuiltinErrors(true).
		RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("RunTests: %v", err)
	}
	n := 0
	for r := range ch {
		n++
		if !r.Pass() {
			t.Errorf("%s.%s: fail=%v error=%v", r.Package, r.Name, r.Fail, r.Error)
		}
	}
	if n < 8 {
		t.Errorf("ran %d rego tests, want at least 8", n)
	}
}

// TestLoadSkipsTestFiles proves Load leaves *_test.rego out unless asked: its modules are
// absent and a broken test file does not break the proxy's policy.
func TestLoadSkipsTestFiles(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.rego":      "package ztp\nallow := true\n",
		"p_test.rego": "package ztp_test\ntest_broken if { this does not parse",
	})
	e, err := Load(testCtx(t), Options{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := len(e.Modules()); got != 1 {
		t.Errorf("len(Modules()) = %d, want 1", got)
	}
	_, err = Load(testCtx(t), Options{Paths: []string{dir}, Tests: true})
	if err == nil {
		t.Errorf("Load(Tests: true) of a broken test file: err = nil, want a compile error")
	}
}
