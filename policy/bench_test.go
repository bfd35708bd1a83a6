package policy

import (
	"testing"

	"github.com/ztp-dev/ztp/audit"
)

// BenchmarkEval measures one message: input conversion, evaluation and Decide, with the
// input shape the proxy builds (numbers as json.Number; principal and metadata converted
// once per call, as the proxy does).
func BenchmarkEval(b *testing.B) {
	// Requests as the proxy renders them from etcdctl's messages: every field without
	// presence there, at its zero value when the client left it out.
	put := map[string]any{"key": "Zm9v", "value": "YmFy", "lease": "0", "prevKv": false, "ignoreValue": false, "ignoreLease": false}
	rng := map[string]any{"key": "Zm9v", "rangeEnd": "", "limit": "0", "revision": "0", "sortOrder": "NONE", "sortTarget": "KEY",
		"serializable": false, "keysOnly": false, "countOnly": false, "minModRevision": "0", "maxModRevision": "0",
		"minCreateRevision": "0", "maxCreateRevision": "0"}
	del := map[string]any{"key": "Zm9v", "rangeEnd": "Zm9w", "prevKv": false}
	cases := []struct {
		name  string
		load  func(testing.TB) *Engine
		input map[string]any
		want  string
	}{
		{
			name:  "etcd/deployer-put",
			load:  loadEtcd,
			input: etcdInput(b, deployerID, "automation", []string{"deployers"}, "/etcdserverpb.KV/Put", put),
			want:  DecisionAllow,
		},
		{
			name:  "etcd/human-put",
			load:  loadEtcd,
			input: etcdInput(b, aliceID, "human", []string{"sre"}, "/etcdserverpb.KV/Put", put),
			want:  DecisionDeny,
		},
		{
			name:  "etcd/human-range",
			load:  loadEtcd,
			input: etcdInput(b, aliceID, "human", []string{"sre"}, "/etcdserverpb.KV/Range", rng),
			want:  DecisionAllow,
		},
		// The example policies as shipped (examples/etcd/policies: etcd.rego and budgets.rego).
		{
			name:  "examples-etcd/deployer-put",
			load:  loadDir("../examples/etcd/policies"),
			input: etcdInput(b, deployerID, "automation", []string{"deployers"}, "/etcdserverpb.KV/Put", put),
			want:  DecisionAllow,
		},
		{
			name:  "examples-etcd/human-range",
			load:  loadDir("../examples/etcd/policies"),
			input: etcdInput(b, aliceID, "human", []string{"sre"}, "/etcdserverpb.KV/Range", rng),
			want:  DecisionAllow,
		},
		{
			name:  "examples-etcd/deployer-delete",
			load:  loadDir("../examples/etcd/policies"),
			input: etcdInput(b, deployerID, "automation", []string{"deployers"}, "/etcdserverpb.KV/DeleteRange", del),
			want:  DecisionAllow,
		},
		{
			name:  "examples-demo/automation-drain",
			load:  loadDir("../examples/demo/policies"),
			input: etcdInput(b, deployerID, "automation", []string{"fleet-controllers"}, "/fleet.v1.Fleet/DrainMachine", map[string]any{"name": "m-1"}),
			want:  DecisionAllow,
		},
		{
			name: "oneline",
			load: func(tb testing.TB) *Engine {
				return loadPolicy(tb, "package ztp\nallow if input.principal.kind == \"automation\"\n", nil)
			},
			input: etcdInput(b, deployerID, "automation", []string{"deployers"}, "/etcdserverpb.KV/Put", put),
			want:  DecisionAllow,
		},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			e := c.load(b)
			ctx := testCtx(b)
			// The proxy converts the parts of the input that stay the same for a
			// whole call (principal, metadata) once per call, not per message.
			for _, k := range []string{"principal", "metadata"} {
				v, err := Value(c.input[k])
				if err != nil {
					b.Fatal(err)
				}
				c.input[k] = v
			}
			b.ReportAllocs()
			for b.Loop() {
				res, err := e.Eval(ctx, c.input)
				if v := Decide(res, err, Enforce, ""); v.Decision != c.want {
					b.Fatalf("Decide = %+v (err %v), want %s", v, err, c.want)
				}
			}
		})
	}
}

func loadDir(dir string) func(testing.TB) *Engine {
	return func(tb testing.TB) *Engine {
		tb.Helper()
		e, err := Load(testCtx(tb), Options{Paths: []string{dir}})
		if err != nil {
			tb.Fatalf("Load(%s): %v", dir, err)
		}
		return e
	}
}

// BenchmarkInput isolates the conversion of the proxy's input to an AST value.
func BenchmarkInput(b *testing.B) {
	in := etcdInput(b, deployerID, "automation", []string{"deployers"}, "/etcdserverpb.KV/Put", map[string]any{"key": "Zm9v"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := toValue(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadTested is the work of one policy reload in the proxy: read, compile,
// prepare, and run the policy's own tests.
func BenchmarkLoadTested(b *testing.B) {
	ctx := testCtx(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, rep, err := LoadTested(ctx, Options{Paths: []string{"testdata/etcd"}}); err != nil || rep.Count(TestPass) < 8 {
			b.Fatalf("LoadTested = %v, %v", rep, err)
		}
	}
}

// BenchmarkReplay is the cost of replaying one recorded request: rebuild the input from
// the record, evaluate, compare.
func BenchmarkReplay(b *testing.B) {
	e := loadEtcd(b)
	ctx := testCtx(b)
	rec, err := audit.ParseLine([]byte(`{"seq":1,"time":"2026-11-26T10:00:00Z","type":"request","principal":{"id":"spiffe://example.org/user/alice","kind":"human","groups":["sre"],"authn":"mtls"},"method":"/etcdserverpb.KV/Put","upstream":"etcd","message_index":0,"request":{"key":"Zm9v","value":"YmFy"},"request_decoded":true,"metadata":{"x-request-id":["r-1"]},"decision":"allow","policy_version":"sha256:x"}`))
	if err != nil {
		b.Fatal(err)
	}
	r := NewReplayer(e, ReplayOptions{})
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Add(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	if r.Report().AllowToDeny.Count == 0 {
		b.Fatal("the human Put should change from allow to deny")
	}
}
