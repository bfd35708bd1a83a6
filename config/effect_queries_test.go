package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const effectQueries = "    effect_queries:\n      methods: [/etcdserverpb.KV/Range, /etcdserverpb.Lease/LeaseTimeToLive]\n"

func TestEffectQueries(t *testing.T) {
	dir := fixture(t)
	src := add(effectQueries, "    tls: { insecure: true }\n")(valid)
	c, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	q := c.Upstreams[0].EffectQueries
	if q == nil || len(q.Methods) != 2 || q.MaxPerDecision != DefaultEffectQueriesMax || q.Timeout != DefaultEffectQueriesTimeout {
		t.Fatalf("effect_queries = %+v, want two methods and the defaults", q)
	}
	c, err = Parse(filepath.Join(dir, "ztp.yaml"), []byte(valid))
	if err != nil || c.Upstreams[0].EffectQueries != nil {
		t.Fatalf("without the section: %+v, %v; want nil (no queries allowed)", c.Upstreams[0].EffectQueries, err)
	}
	src = add(effectQueries+"      max_per_decision: 3\n      timeout: 500ms\n", "    tls: { insecure: true }\n")(valid)
	if c, err = Parse(filepath.Join(dir, "ztp.yaml"), []byte(src)); err != nil || c.Upstreams[0].EffectQueries.MaxPerDecision != 3 || c.Upstreams[0].EffectQueries.Timeout != 500*time.Millisecond {
		t.Fatalf("explicit limits: %+v, %v", c.Upstreams[0].EffectQueries, err)
	}
}

func TestEffectQueriesErrors(t *testing.T) {
	dir := fixture(t)
	after := "    tls: { insecure: true }\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"no methods", "    effect_queries: { max_per_decision: 2 }\n", "ztp.yaml:20: upstreams[0].effect_queries.methods: at least one method is required"},
		{"not a full name", "    effect_queries: { methods: [KV/Range] }\n", `upstreams[0].effect_queries.methods[0]: want a full method name /package.Service/Method, got "KV/Range"`},
		{"not routed here", "    effect_queries: { methods: [/other.Svc/Get] }\n", "upstreams[0].effect_queries.methods[0]: /other.Svc/Get is not routed to this upstream"},
		{"duplicate", "    effect_queries: { methods: [/etcdserverpb.KV/Range, /etcdserverpb.KV/Range] }\n", "effect_queries.methods[1]: duplicate method"},
		{"too many", "    effect_queries: { methods: [/etcdserverpb.KV/Range], max_per_decision: 5000 }\n", "upstreams[0].effect_queries.max_per_decision: must be between 1 and 1000"},
		{"negative count", "    effect_queries: { methods: [/etcdserverpb.KV/Range], max_per_decision: -1 }\n", "effect_queries.max_per_decision: must be between 1 and 1000"},
		{"negative timeout", "    effect_queries: { methods: [/etcdserverpb.KV/Range], timeout: -1s }\n", "upstreams[0].effect_queries.timeout: must be positive"},
		{"unknown key", "    effect_queries: { methods: [/etcdserverpb.KV/Range], limit: 3 }\n", "upstreams[0].effect_queries.limit: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(add(tc.text, after)(valid)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want %q", err, tc.want)
			}
		})
	}
	_, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(add("    effect_queries: { methods: [/etcdserverpb.KV/Range] }\n", after)(repl("    descriptors: etcd.protoset\n", "    reflection: true\n")(valid))))
	if err == nil || !strings.Contains(err.Error(), "upstreams[0].effect_queries: needs descriptors") {
		t.Fatalf("with reflection: %v, want effect_queries to need descriptors", err)
	}
}
