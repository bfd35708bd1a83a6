package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// queryingPolicy asks the backend (ztp.query) before it allows a UnaryCall.
const queryingPolicy = `package ztp

default allow := false

query(method, request) := ztp.query(method, request)

allow if query("/grpc.testing.TestService/UnaryCall", {"payload": {"body": "cHJvYmU="}}).username == "backend"
`

// TestPolicyCommandsWithEffectQueries: a policy calling ztp.query compiles in every
// ztpctl policy command; test mocks it, eval says it has no upstream to ask, replay
// answers it from the audit record and skips what the record does not hold.
func TestPolicyCommandsWithEffectQueries(t *testing.T) {
	env := proxytest.Prepare(t, proxytest.Options{Policy: queryingPolicy})
	env.RewriteConfig(t, func(s string) string {
		return strings.Replace(s, "    tls: { insecure: true }\n", "    tls: { insecure: true }\n    effect_queries: { methods: [/grpc.testing.TestService/UnaryCall] }\n", 1)
	})
	env.Restart(t)
	if _, err := env.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	db := snapshotAudit(t, env)

	dir := writePolicyFiles(t, map[string]string{
		"p.rego": queryingPolicy,
		"p_test.rego": `package ztp_test

import data.ztp

test_backend_answers if ztp.allow with ztp.query as {"username": "backend"}

test_impostor if not ztp.allow with ztp.query as {"username": "someone"}
`,
	})
	out, _, err := runCtl(t, "", "policy", "test", dir)
	if err != nil || !strings.Contains(out, "PASS: 2/2") {
		t.Errorf("ztpctl policy test = %q, %v; want both tests passing with ztp.query mocked", out, err)
	}

	out, _, err = runCtl(t, `{"principal":{"id":"x","kind":"automation","groups":[]},"method":"/grpc.testing.TestService/UnaryCall","request":{},"request_decoded":true}`,
		"policy", "eval", "--policy", dir, "--input", "-")
	if err != nil || !strings.Contains(out, "ztp.query") || !strings.Contains(out, "no upstream to ask here") {
		t.Errorf("ztpctl policy eval = %q, %v; want the decision to fail naming ztp.query", out, err)
	}

	answers := filepath.Join(t.TempDir(), "answers.json")
	if err := os.WriteFile(answers, []byte(`[{"method":"/grpc.testing.TestService/UnaryCall","request":{"payload":{"body":"cHJvYmU="}},"answer":{"username":"backend"}}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCtl(t, `{"principal":{"id":"x","kind":"automation","groups":[]},"method":"/grpc.testing.TestService/UnaryCall","request":{},"request_decoded":true}`,
		"policy", "eval", "--policy", dir, "--input", "-", "--answers", answers, "-o", "json")
	if err != nil || !strings.Contains(out, `"verdict": "allow"`) {
		t.Errorf("ztpctl policy eval --answers = %q, %v; want allow, from the answer given", out, err)
	}
	if _, _, err := runCtl(t, "{}", "policy", "eval", "--policy", dir, "--input", "-", "--answers", dir); err == nil || !strings.Contains(err.Error(), "--answers") {
		t.Errorf("ztpctl policy eval --answers DIR = %v, want an error naming --answers", err)
	}

	out, _, err = runCtl(t, `{"principal":{"id":"x","kind":"automation","groups":[]},"method":"/grpc.testing.TestService/UnaryCall","request":{},"request_decoded":true}`,
		"policy", "eval", "--policy", dir, "--input", "-", "--answers", answers, "--explain")
	if err != nil || !strings.Contains(out, "allow") || strings.Contains(out, "no upstream to ask here") {
		t.Errorf("ztpctl policy eval --answers --explain = %q, %v; want every rule evaluated with the answers", out, err)
	}
	// An audit record as the input brings its own answers.
	var record string
	for _, line := range strings.Split(strings.TrimSpace(mustRead(t, exportAuditJSONL(t, db))), "\n") {
		if strings.Contains(line, `"queries":[`) {
			record = line
		}
	}
	out, _, err = runCtl(t, record, "policy", "eval", "--policy", dir, "--input", "-", "-o", "json")
	if record == "" || err != nil || !strings.Contains(out, `"verdict": "allow"`) {
		t.Errorf("ztpctl policy eval of the audit record %s = %q, %v; want allow, from the record's answers", record, out, err)
	}

	out, _, err = runCtl(t, "", "policy", "replay", "--policy", filepath.Join(env.Dir, "policies"), "--db", db)
	if err != nil || !strings.Contains(out, "unchanged: 1 ") {
		t.Errorf("ztpctl policy replay (same policy) = %q, %v; want the recorded answer to decide the same", out, err)
	}
	other := writePolicyFiles(t, map[string]string{"p.rego": strings.Replace(queryingPolicy, "cHJvYmU=", "b3RoZXI=", 1)})
	out, _, err = runCtl(t, "", "policy", "replay", "--policy", other, "--db", db)
	if err != nil || !strings.Contains(out, "1 query not recorded") {
		t.Errorf("ztpctl policy replay (another query) = %q, %v; want the record skipped as query not recorded", out, err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
