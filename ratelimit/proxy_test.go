package ratelimit_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// withClock makes clk the proxy's time: tests move it instead of sleeping.
func withClock(clk *testclock.Clock) func(*proxy.Options) {
	return func(o *proxy.Options) { o.Now = clk.Now }
}

// call makes one EmptyCall and returns its trailer and its error.
func call(t *testing.T, c testgrpc.TestServiceClient) (metadata.MD, error) {
	t.Helper()
	var tr metadata.MD
	_, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}, grpc.Trailer(&tr))
	return tr, err
}

func unary(t *testing.T, c testgrpc.TestServiceClient, body string) (metadata.MD, error) {
	t.Helper()
	var tr metadata.MD
	_, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}, grpc.Trailer(&tr))
	return tr, err
}

func pushback(md metadata.MD) string {
	if v := md.Get("grpc-retry-pushback-ms"); len(v) == 1 {
		return v[0]
	}
	return fmt.Sprint(md.Get("grpc-retry-pushback-ms"))
}

func ratelimited(t *testing.T, env *proxytest.Env, method string) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	for _, r := range env.Requests(t, method) {
		if r.Decision == audit.DecisionRatelimited {
			out = append(out, r)
		}
	}
	return out
}

// TestProxyRateLimit: a real gRPC client over the limit gets RESOURCE_EXHAUSTED,
// the pushback trailer and the wait in the message; the refusal is audited and
// never reaches the backend; the bucket is the principal's, whatever connection.
func TestProxyRateLimit(t *testing.T) {
	clk := testclock.New(t0)
	env := proxytest.Start(t, proxytest.Options{
		Proxy: withClock(clk),
		Extra: `rate_limits:
  - match: { kind: automation, method: "/grpc.testing.TestService/*" }
    rps: 0.5
    burst: 2
`,
	})
	deployer := env.Dial(t, proxytest.DeployerID)
	for i := range 2 {
		if _, err := call(t, deployer); err != nil {
			t.Fatalf("call %d within the burst: %v", i+1, err)
		}
	}
	tr, err := call(t, deployer)
	proxytest.WantCode(t, "third EmptyCall", err, codes.ResourceExhausted, "ztp: rate limit rate_limits[0] for "+proxytest.DeployerID+"; retry in 2s")
	if got := pushback(tr); got != "2000" {
		t.Errorf("grpc-retry-pushback-ms = %q, want \"2000\" (one token at 0.5/s)", got)
	}

	// Another connection of the same principal draws on the same bucket.
	_, err = call(t, env.Dial(t, proxytest.DeployerID))
	proxytest.WantCode(t, "EmptyCall on a second connection", err, codes.ResourceExhausted, "rate limit rate_limits[0]")

	// A principal no rule matches is not limited.
	alice := env.Dial(t, proxytest.AliceID)
	for i := range 5 {
		if _, err := call(t, alice); err != nil {
			t.Fatalf("alice's call %d: %v (no rule matches her)", i+1, err)
		}
	}

	clk.Advance(1999 * time.Millisecond)
	tr, err = call(t, deployer)
	proxytest.WantCode(t, "EmptyCall 1ms early", err, codes.ResourceExhausted, "retry in 1ms")
	if got := pushback(tr); got != "1" {
		t.Errorf("grpc-retry-pushback-ms 1ms early = %q, want \"1\"", got)
	}
	clk.Advance(time.Millisecond)
	if _, err := call(t, deployer); err != nil {
		t.Errorf("EmptyCall after the refill: %v", err)
	}

	if got, want := env.Backend.Calls.Load(), int64(2+5+1); got != want {
		t.Errorf("backend saw %d calls, want %d (refusals never reach it)", got, want)
	}
	recs := ratelimited(t, env, "/grpc.testing.TestService/EmptyCall")
	if len(recs) != 3 {
		t.Fatalf("ratelimited audit records = %d, want 3", len(recs))
	}
	for _, r := range recs {
		if r.Principal.ID != proxytest.DeployerID || len(r.Reasons) != 1 || r.Reasons[0] != "rate limit rate_limits[0] for "+proxytest.DeployerID {
			t.Errorf("audit record %+v: want the deployer and reason naming the bucket", r)
		}
	}
}

// budgetPolicy draws on a budget for every UnaryCall, and may still deny it.
const budgetPolicy = `package ztp

default allow := false

allow if input.rpc in {"UnaryCall", "EmptyCall"}

body := base64.decode(object.get(object.get(input.request, "payload", {}), "body", ""))

deny contains "the payload says deny" if body == "deny"

budgets contains {"key": concat(":", ["unary", input.upstream]), "cost": 1} if input.rpc == "UnaryCall"

budgets contains {"key": "unconfigured:x", "cost": 1} if body == "unconfigured"
`

// TestProxyBudgetsFromPolicy: the budget keys come from a real policy; a denied
// message spends nothing; an exhausted budget is RESOURCE_EXHAUSTED with the wait;
// a key without a budgets entry is refused and marked not retryable.
func TestProxyBudgetsFromPolicy(t *testing.T) {
	clk := testclock.New(t0)
	env := proxytest.Start(t, proxytest.Options{
		Proxy:  withClock(clk),
		Policy: budgetPolicy,
		Extra: `budgets:
  - prefix: "unary:"
    limit: 2
    per: 1h
`,
	})
	c := env.Dial(t, proxytest.DeployerID)
	steps := []struct {
		name     string
		body     string
		advance  time.Duration
		code     codes.Code
		msg      string
		pushback string
	}{
		{"denied messages spend nothing", "deny", 0, codes.PermissionDenied, "the payload says deny", ""},
		{"denied again", "deny", 0, codes.PermissionDenied, "the payload says deny", ""},
		{"first unit", "ok", 0, codes.OK, "", ""},
		{"a key without a budget is refused for good", "unconfigured", 0, codes.ResourceExhausted, "change budget unconfigured:x (no budgets prefix covers it)", "-1"},
		{"second unit", "ok", 0, codes.OK, "", ""},
		{"exhausted", "ok", 0, codes.ResourceExhausted, "change budget unary:test exhausted; retry in 30m0s", "1800000"},
		{"one unit back after half an hour", "ok", 30 * time.Minute, codes.OK, "", ""},
		{"and spent", "ok", 0, codes.ResourceExhausted, "change budget unary:test exhausted", "1800000"},
	}
	for _, s := range steps {
		clk.Advance(s.advance)
		tr, err := unary(t, c, s.body)
		proxytest.WantCode(t, s.name, err, s.code, s.msg)
		if got := pushback(tr); s.pushback != "" && got != s.pushback {
			t.Errorf("%s: grpc-retry-pushback-ms = %q, want %q", s.name, got, s.pushback)
		}
	}
	// EmptyCall names no budget: not affected.
	if _, err := call(t, c); err != nil {
		t.Errorf("EmptyCall with the budget exhausted: %v", err)
	}
	recs := ratelimited(t, env, "/grpc.testing.TestService/UnaryCall")
	if len(recs) != 3 || recs[1].Reasons[0] != "change budget unary:test exhausted" {
		t.Errorf("ratelimited records = %v, want 3, the second naming the budget key", reasons(recs))
	}

	// The budget's bucket is visible to every authenticated principal.
	st, err := ztpv1.NewRateLimitClient(env.Conn(t, proxytest.AliceID)).Status(proxytest.Ctx(t), &ztpv1.RateLimitStatusRequest{})
	if err != nil {
		t.Fatalf("RateLimit/Status: %v", err)
	}
	found := false
	for _, b := range st.GetBuckets() {
		if b.GetKind() == "budget" && b.GetKey() == "unary:test" {
			found = true
			if b.GetRule() != "budgets[0]" || b.GetTokens() != 0 || b.GetBurst() != 2 {
				t.Errorf("bucket %v, want budgets[0] with 0 of 2 tokens", b)
			}
		}
	}
	if !found || st.GetTotal() != uint64(len(st.GetBuckets())) {
		t.Errorf("Status = %v, want the unary:test budget and total = len(buckets)", st)
	}
}

func reasons(recs []*audit.Record) [][]string {
	var out [][]string
	for _, r := range recs {
		out = append(out, r.Reasons)
	}
	return out
}

// TestProxyReloadKeepsBuckets: a SIGHUP reload that changes one rule leaves the
// buckets of the others as they were.
func TestProxyReloadKeepsBuckets(t *testing.T) {
	clk := testclock.New(t0)
	human := `  - match: { kind: human }
    rps: 0.1
    burst: 2
`
	automation := `  - match: { kind: automation }
    rps: 0.1
    burst: 1
`
	env := proxytest.Start(t, proxytest.Options{
		Proxy: withClock(clk),
		Extra: "rate_limits:\n" + human + automation,
	})
	alice, deployer := env.Dial(t, proxytest.AliceID), env.Dial(t, proxytest.DeployerID)
	for range 2 {
		call(t, alice)
	}
	call(t, deployer)
	if _, err := call(t, alice); err == nil {
		t.Fatal("alice allowed past her burst")
	}

	// The reload moves the human rule down and replaces the automation rule.
	env.RewriteConfig(t, func(cfg string) string {
		return strings.Replace(cfg, human+automation, `  - match: { kind: automation, group: deployers }
    rps: 0.1
    burst: 3
`+human, 1)
	})
	if err := env.Server.Reload(proxytest.Ctx(t)); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	_, err := call(t, alice)
	proxytest.WantCode(t, "alice after the reload", err, codes.ResourceExhausted, "rate limit rate_limits[1] for "+proxytest.AliceID)
	for i := range 3 {
		if _, err := call(t, deployer); err != nil {
			t.Errorf("deployer call %d under the new rule (burst 3): %v", i+1, err)
		}
	}
}
