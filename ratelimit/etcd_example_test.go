package ratelimit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/ratelimit"
)

const etcdExample = "../examples/etcd/"

// TestEtcdExampleBudgets runs the etcd example's policies (policies/budgets.rego) and
// the budgets of its ztp.yaml together, as the proxy does for each message: the
// policy decides and names the budgets, the limiter draws them.
func TestEtcdExampleBudgets(t *testing.T) {
	raw, err := os.ReadFile(etcdExample + "ztp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Only these keys: config.Load would also want the example's certificates.
	var cfg struct {
		RateLimits []config.RateLimitRule `yaml:"rate_limits"`
		Budgets    []config.Budget        `yaml:"budgets"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("ztp.yaml: %v", err)
	}
	if len(cfg.Budgets) == 0 || len(cfg.RateLimits) == 0 {
		t.Fatalf("ztp.yaml has rate_limits %v and budgets %v, want both", cfg.RateLimits, cfg.Budgets)
	}
	l := newLimiter(t, cfg.RateLimits, cfg.Budgets, ratelimit.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eng, err := policy.Load(ctx, policy.Options{Paths: []string{etcdExample + "policies"}})
	if err != nil {
		t.Fatalf("policy.Load: %v", err)
	}

	const (
		deployer = "spiffe://example.org/ns/prod/sa/deployer"
		alice    = "spiffe://example.org/user/alice"
	)
	// msg decides one message the way the pipeline does, draws its budgets when it
	// is allowed, and returns the decision and Take's answer.
	msg := func(at time.Duration, who, kind, method string, req map[string]any, grant string) (string, bool, time.Duration, string) {
		t.Helper()
		in := map[string]any{
			"principal":       map[string]any{"id": who, "kind": kind, "groups": []any{map[string]string{"automation": "deployers", "human": "sre"}[kind]}, "authn": "mtls"},
			"method":          method,
			"upstream":        "etcd",
			"request":         req,
			"request_decoded": true,
			"breakglass":      map[string]any{"active": grant != ""},
		}
		res, err := eng.Eval(policy.WithQueries(ctx, policy.NewQueries(configKeys{}, policy.QueryLimits{Max: 16})), in)
		if err != nil {
			t.Fatalf("Eval(%s %v): %v", method, req, err)
		}
		v := policy.Decide(res, nil, policy.Enforce, grant)
		if !v.Forward() {
			return v.Decision, false, 0, ""
		}
		ok, wait, key := l.Take(res.Budgets, t0.Add(at))
		return v.Decision, ok, wait, key
	}
	prefixPrevKV := map[string]any{"key": "L2NvbmZpZy8=", "rangeEnd": "L2NvbmZpZzA=", "prevKv": true} // del /config/ --prefix --prev-kv
	steps := []struct {
		name     string
		at       time.Duration
		who      string
		method   string
		req      map[string]any
		grant    string
		decision string
		ok       bool
		wait     time.Duration
		key      string
	}{
		{"member remove without break-glass is denied and spends nothing", 0, alice, "/etcdserverpb.Cluster/MemberRemove", map[string]any{"ID": "42"}, "", "deny", false, 0, ""},
		{"member remove under break-glass", 0, alice, "/etcdserverpb.Cluster/MemberRemove", map[string]any{"ID": "42"}, "bg-1", "allow", true, 0, ""},
		{"a second one within the hour, break-glass or not", 10 * time.Minute, alice, "/etcdserverpb.Cluster/MemberRemove", map[string]any{"ID": "43"}, "bg-1", "allow", false, 50 * time.Minute, "member-remove:etcd"},
		{"an hour after the first", time.Hour, alice, "/etcdserverpb.Cluster/MemberRemove", map[string]any{"ID": "43"}, "bg-1", "allow", true, 0, ""},
		{"prefix delete with prevKv 1", 0, deployer, "/etcdserverpb.KV/DeleteRange", prefixPrevKV, "", "allow", true, 0, ""},
		{"prefix delete with prevKv 2", 0, deployer, "/etcdserverpb.KV/DeleteRange", prefixPrevKV, "", "allow", true, 0, ""},
		{"prefix delete with prevKv 3", 0, deployer, "/etcdserverpb.KV/DeleteRange", prefixPrevKV, "", "allow", true, 0, ""},
		{"the fourth in an hour", 0, deployer, "/etcdserverpb.KV/DeleteRange", prefixPrevKV, "", "allow", false, 20 * time.Minute, "delete-prevkv:etcd"},
		{"the same delete without prevKv still has delete: budget", 0, deployer, "/etcdserverpb.KV/DeleteRange", map[string]any{"key": "L2NvbmZpZy8=", "rangeEnd": "L2NvbmZpZzA="}, "", "allow", true, 0, ""},
		{"single-key deletes cost 1 of the 100 per hour", 0, deployer, "/etcdserverpb.KV/DeleteRange", map[string]any{"key": "Zm9v"}, "", "allow", true, 0, ""},
	}
	for _, s := range steps {
		d, ok, wait, key := msg(s.at, s.who, map[string]string{deployer: "automation", alice: "human"}[s.who], s.method, s.req, s.grant)
		if d != s.decision || ok != s.ok || wait != s.wait || key != s.key {
			t.Errorf("%s: decision %s, Take = %v, %v, %q; want %s, %v, %v, %q", s.name, d, ok, wait, key, s.decision, s.ok, s.wait, s.key)
		}
	}
	// A delete costs the keys it removes: 3 prefix deletes with prevKv and one without,
	// of the 10 keys under /config/, cost 40 units, the single key 1.
	if got := tokens(t, l, t0)["delete:etcd"]; got != 59 {
		t.Errorf("delete:etcd tokens = %v, want 59 of 100", got)
	}
}

// configKeys answers the policy's effect queries (a count-only Range of a delete's range)
// as an etcd holding 10 keys under /config/ and the key foo would.
type configKeys struct{}

func (configKeys) Allows(string) error { return nil }

func (configKeys) Query(_ context.Context, method string, request []byte) ([]byte, error) {
	var req struct{ Key string }
	if err := json.Unmarshal(request, &req); err != nil || method != "/etcdserverpb.KV/Range" {
		return nil, fmt.Errorf("unexpected query %s %s", method, request)
	}
	if req.Key == "L2NvbmZpZy8=" { // /config/
		return []byte(`{"count":"10"}`), nil
	}
	return []byte(`{"count":"1"}`), nil
}
