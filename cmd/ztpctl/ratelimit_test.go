package main

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// rateLimitEnv starts a proxy with a fake clock, a rate rule for automation and a
// budget the policy draws on for UnaryCall, and spends some of both.
func rateLimitEnv(t *testing.T) *proxytest.Env {
	t.Helper()
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).UnixNano())
	env := proxytest.Start(t, proxytest.Options{
		Proxy: func(o *proxy.Options) { o.Now = func() time.Time { return time.Unix(0, now.Load()).UTC() } },
		Policy: `package ztp

default allow := false

allow if input.principal.kind == "automation"

budgets contains {"key": "unary:test", "cost": 1} if input.rpc == "UnaryCall"
`,
		Extra: `rate_limits:
  - match: { kind: automation }
    rps: 0.5
    burst: 4
budgets:
  - prefix: "unary:"
    limit: 5
    per: 1h
`,
	})
	c := env.Dial(t, proxytest.DeployerID)
	for range 3 {
		if _, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
			t.Fatalf("EmptyCall: %v", err)
		}
	}
	if _, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	return env
}

func TestRateLimitStatus(t *testing.T) {
	env := rateLimitEnv(t)
	tests := []struct {
		name string
		args []string
		want []string // lines, fields separated by runs of spaces
	}{
		{
			name: "all buckets",
			args: []string{"ratelimit", "status"},
			want: []string{
				"KIND RULE KEY TOKENS LIMIT",
				"budget budgets[0] unary:test 4 5 per 1h0m0s",
				"rate rate_limits[0] " + proxytest.DeployerID + " 0 burst 4, 0.5/s",
			},
		},
		{
			name: "one principal",
			args: []string{"ratelimit", "status", "--principal", proxytest.DeployerID},
			want: []string{
				"KIND RULE KEY TOKENS LIMIT",
				"rate rate_limits[0] " + proxytest.DeployerID + " 0 burst 4, 0.5/s",
			},
		},
		{
			name: "a principal without buckets",
			args: []string{"ratelimit", "status", "--principal", proxytest.AliceID},
			want: []string{"no tracked buckets for " + proxytest.AliceID + ": every limit is at its full burst"},
		},
		{
			name: "capped to the most depleted",
			args: []string{"ratelimit", "status", "--limit", "1"},
			want: []string{
				"KIND RULE KEY TOKENS LIMIT",
				"rate rate_limits[0] " + proxytest.DeployerID + " 0 burst 4, 0.5/s",
				"showing the 1 most depleted of 2 buckets (--limit)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Alice is a human: no rule limits her, and anyone may read the status.
			out, err := ztpctl(t, env, proxytest.AliceID, tc.args...)
			if err != nil {
				t.Fatalf("ztpctl %v: %v", tc.args, err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				got = append(got, strings.Join(strings.Fields(line), " "))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("ztpctl %v =\n%s\nwant\n%s", tc.args, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestRateLimitStatusJSON(t *testing.T) {
	env := rateLimitEnv(t)
	out, err := ztpctl(t, env, proxytest.AliceID, "ratelimit", "status", "-o", "json")
	if err != nil {
		t.Fatalf("ztpctl ratelimit status -o json: %v", err)
	}
	var got struct {
		Buckets []struct {
			Kind, Rule, Key string
			Tokens, Burst   float64
			PerSecond       float64 `json:"per_second"`
		}
		Total int
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output %q is not JSON: %v", out, err)
	}
	if got.Total != 2 || len(got.Buckets) != 2 {
		t.Fatalf("ratelimit status -o json = %+v, want 2 buckets, total 2", got)
	}
	// Three EmptyCalls and a UnaryCall took the whole burst of 4.
	if b := got.Buckets[1]; b.Kind != "rate" || b.Rule != "rate_limits[0]" || b.Key != proxytest.DeployerID || b.Tokens != 0 || b.Burst != 4 || b.PerSecond != 0.5 {
		t.Errorf("rate bucket = %+v, want the deployer's with 0 of 4 tokens at 0.5/s", b)
	}
	if u := got.Buckets[0]; u.Kind != "budget" || u.Key != "unary:test" || u.Tokens != 4 || u.Burst != 5 {
		t.Errorf("budget bucket = %+v, want unary:test with 4 of 5", u)
	}
}

func TestRateLimitStatusErrors(t *testing.T) {
	env := rateLimitEnv(t)
	if _, err := ztpctl(t, env, proxytest.AliceID, "ratelimit", "status", "extra"); err == nil {
		t.Errorf("ztpctl ratelimit status extra = nil error, want an argument error")
	}
	if _, err := ztpctl(t, env, proxytest.AliceID, "ratelimit", "status", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("ztpctl ratelimit status -o yaml = %v, want an --output error", err)
	}
}
