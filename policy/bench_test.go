package policy

import (
	"testing"
)

// BenchmarkEval measures one message: input conversion, evaluation and Decide, with the
// input shape the proxy builds (numbers as json.Number, metadata as map[string][]string).
func BenchmarkEval(b *testing.B) {
	put := map[string]any{"key": "Zm9v", "value": "YmFy"}
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
			input: etcdInput(b, aliceID, "human", []string{"sre"}, "/etcdserverpb.KV/Range", map[string]any{"key": "Zm9v"}),
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
