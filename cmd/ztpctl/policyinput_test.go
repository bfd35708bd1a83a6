package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ztp-dev/ztp/policy"
)

const (
	etcdProtoset = "../../examples/etcd/etcd.protoset"
	etcdPolicies = "../../examples/etcd/policies"
	deployerID   = "spiffe://example.org/ns/prod/sa/deployer"
)

// policyInput runs 'ztpctl policy input' for a deployer and returns the input document.
func policyInput(t *testing.T, stdin string, args ...string) (map[string]any, string) {
	t.Helper()
	args = append([]string{"policy", "input", "--descriptors", etcdProtoset, "--upstream", "etcd",
		"--principal", deployerID, "--kind", "automation", "--group", "deployers"}, args...)
	out, stderr, err := runCtl(t, stdin, args...)
	if err != nil {
		t.Fatalf("ztpctl %v: %v", args, err)
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return in, stderr
}

func TestPolicyInputBuildsTheProxyInput(t *testing.T) {
	in, notes := policyInput(t, "", "--method", "/etcdserverpb.KV/DeleteRange",
		"--request", `{"key":"Lw==","rangeEnd":"MA=="}`, "--metadata", "Client-API-Version=3.4", "--metadata", "x-vault-token=t", "--ticket", "OPS-1")
	// client-api-version is read by default; a credential header never is.
	if !strings.Contains(notes, "--metadata x-vault-token: the proxy passes a header to policies only when audit.headers lists it") || strings.Contains(notes, "client-api-version:") {
		t.Errorf("notes = %q, want one about x-vault-token only", notes)
	}
	for _, k := range inputKeys {
		if _, ok := in[k]; !ok {
			t.Errorf("input lacks %q", k)
		}
	}
	if in["method"] != "/etcdserverpb.KV/DeleteRange" || in["service"] != "etcdserverpb.KV" || in["rpc"] != "DeleteRange" || in["upstream"] != "etcd" {
		t.Errorf("method fields: %v %v %v %v", in["method"], in["service"], in["rpc"], in["upstream"])
	}
	if in["request_decoded"] != true {
		t.Fatalf("request_decoded = %v", in["request_decoded"])
	}
	req := in["request"].(map[string]any)
	if req["key"] != "Lw==" || req["rangeEnd"] != "MA==" {
		t.Errorf("request = %v", req)
	}
	pr := in["principal"].(map[string]any)
	if pr["id"] != deployerID || pr["kind"] != "automation" || !slices.Equal(pr["groups"].([]any), []any{"deployers"}) {
		t.Errorf("principal = %v", pr)
	}
	if md := in["metadata"].(map[string]any); !slices.Equal(md["client-api-version"].([]any), []any{"3.4"}) {
		t.Errorf("metadata = %v", md)
	}
	if in["ticket"] != "OPS-1" {
		t.Errorf("ticket = %v", in["ticket"])
	}

	// The document is what 'policy eval' takes: the example policy charges a range delete
	// the keys etcd says it holds (its effect query answered from --answers).
	b, _ := json.Marshal(in)
	answers := filepath.Join(t.TempDir(), "answers.json")
	if err := os.WriteFile(answers, []byte(`[{"method":"/etcdserverpb.KV/Range","request":{"key":"Lw==","rangeEnd":"MA==","revision":"0","countOnly":true},"answer":{"count":"7"}}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCtl(t, string(b), "policy", "eval", "--policy", etcdPolicies, "--input", "-", "--answers", answers, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if stderr != "" {
		t.Errorf("a complete input drew warnings: %s", stderr)
	}
	var res evalJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Verdict != "allow" || len(res.Budgets) != 1 || res.Budgets[0].Key != "delete:etcd" || res.Budgets[0].Cost != 7 {
		t.Errorf("eval = %+v", res)
	}
}

func TestPolicyInputRawBytes(t *testing.T) {
	dir := t.TempDir()
	// PutRequest{key: "a"} plus field 99, which etcd.protoset does not describe.
	msg := protowire.AppendTag(nil, 1, protowire.BytesType)
	msg = protowire.AppendBytes(msg, []byte("a"))
	msg = protowire.AppendTag(msg, 99, protowire.VarintType)
	msg = protowire.AppendVarint(msg, 1)
	bin := filepath.Join(dir, "put.bin")
	if err := os.WriteFile(bin, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	in, _ := policyInput(t, "", "--method", "/etcdserverpb.KV/Put", "--request-bin", bin)
	if got := in["request_unknown_fields"].([]any); !slices.Equal(got, []any{"99"}) {
		t.Errorf("request_unknown_fields = %v, want [99]", got)
	}

	// Bytes that do not parse: the proxy's input has request null, and the tool says why.
	bad := filepath.Join(dir, "bad.bin")
	if err := os.WriteFile(bad, []byte{0x0a, 0x05, 'a'}, 0o600); err != nil {
		t.Fatal(err)
	}
	in, stderr := policyInput(t, "", "--method", "/etcdserverpb.KV/Put", "--request-bin", bad)
	if in["request"] != nil || in["request_decoded"] != false {
		t.Errorf("undecodable: request=%v decoded=%v", in["request"], in["request_decoded"])
	}
	if !strings.Contains(stderr, "could not decode") {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestPolicyInputErrors(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		errHas string
	}{
		{"unknown method", []string{"--method", "/etcdserverpb.KV/Nope", "--request", "{}"}, "--method"},
		{"no request", []string{"--method", "/etcdserverpb.KV/Put"}, "exactly one of --request and --request-bin"},
		{"misspelt field", []string{"--method", "/etcdserverpb.KV/Put", "--request", `{"kee":"YQ=="}`}, `unknown field "kee"`},
		{"bad metadata", []string{"--method", "/etcdserverpb.KV/Put", "--request", "{}", "--metadata", "novalue"}, "want KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"policy", "input", "--descriptors", etcdProtoset}, tc.args...)
			_, _, err := runCtl(t, "", args...)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("ztpctl %v = %v, want an error containing %q", args, err, tc.errHas)
			}
		})
	}
}

func TestPolicyEvalExplain(t *testing.T) {
	in, _ := policyInput(t, "", "--method", "/etcdserverpb.KV/DeleteRange", "--request", `{"key":"Lw=="}`)
	b, _ := json.Marshal(in)

	out, _, err := runCtl(t, string(b), "policy", "eval", "--policy", etcdPolicies, "--input", "-", "--explain")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"deployer = true", "mutating = true", "read: undefined", `deletes = [{"key":"Lw==","prevKv":false,"rangeEnd":""}]`} {
		if !strings.Contains(out, s) {
			t.Errorf("--explain output lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "trace:") {
		t.Errorf("--explain without a level printed a trace")
	}

	out, _, err = runCtl(t, string(b), "policy", "eval", "--policy", etcdPolicies, "--input", "-", "--explain=full", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res evalJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Trace, "Enter data.ztp.deny") && !strings.Contains(res.Trace, "data.ztp.allow") {
		t.Errorf("full trace does not show the decision rules:\n%s", res.Trace)
	}
	deployer := slices.ContainsFunc(res.Rules, func(r policy.RuleValue) bool {
		return r.Name == "deployer" && r.Defined && r.Value == true
	})
	if !deployer {
		t.Errorf("rules lack deployer = true: %+v", res.Rules)
	}

	_, _, err = runCtl(t, string(b), "policy", "eval", "--policy", etcdPolicies, "--input", "-", "--explain=everything")
	if err == nil || !strings.Contains(err.Error(), "--explain") {
		t.Errorf("--explain=everything: err = %v", err)
	}
}

func TestPolicyEvalWarnsAboutIncompleteInput(t *testing.T) {
	_, stderr, err := runCtl(t, `{"method":"/etcdserverpb.KV/Put","methd":"x"}`, "policy", "eval", "--policy", etcdPolicies, "--input", "-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "lacks") || !strings.Contains(stderr, "principal") || !strings.Contains(stderr, "methd, which the proxy never sets") {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestPolicyEvalTakesAnAuditRecord(t *testing.T) {
	// A line of 'ztpctl audit export -o jsonl': a deployer's allowed Put.
	rec := `{"seq":7,"time":"2026-12-07T10:00:00.000000000Z","type":"request",
	  "principal":{"id":"` + deployerID + `","kind":"automation","groups":["deployers"],"authn":"mtls"},
	  "method":"/etcdserverpb.KV/Put","upstream":"etcd","message_index":0,
	  "request":{"key":"YQ==","value":"Yg=="},"request_decoded":true,"decision":"allow",
	  "policy_version":"sha256:x","hash":"00"}`
	out, stderr, err := runCtl(t, rec, "policy", "eval", "--policy", etcdPolicies, "--input", "-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "audit record seq 7") {
		t.Errorf("stderr = %q", stderr)
	}
	if !strings.HasPrefix(out, "verdict:  allow") {
		t.Errorf("an audit record of an allowed Put is not allowed:\n%s", out)
	}

	_, _, err = runCtl(t, `{"seq":8,"type":"outcome","ref":7}`, "policy", "eval", "--policy", etcdPolicies, "--input", "-")
	if err == nil || !strings.Contains(err.Error(), "only request records") {
		t.Errorf("outcome record: err = %v", err)
	}
}

// --config gives policy test and eval the budget limits of a ztp.yaml whose certificates
// are not on this machine, as in a CI job.
func TestPolicyCommandsReadConfigData(t *testing.T) {
	dir := writePolicyFiles(t, map[string]string{
		"p.rego": `package ztp

default allow := false

allow if input.cost <= data.ztp_config.budgets["delete:"].limit
`,
		"p_test.rego": `package ztp_test

import data.ztp

test_the_example_limit if data.ztp_config.budgets["delete:"].limit == 100
`,
	})
	const cfg = "../../examples/etcd/ztp.yaml"
	if out, _, err := runCtl(t, "", "policy", "test", "--config", cfg, dir); err != nil {
		t.Fatalf("policy test --config: %v\n%s", err, out)
	}
	if _, _, err := runCtl(t, "", "policy", "test", dir); err == nil {
		t.Errorf("policy test without --config passed a test that reads data.ztp_config")
	}
	out, _, err := runCtl(t, `{"cost": 100}`, "policy", "eval", "--config", cfg, "--policy", dir, "--input", "-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "verdict:  allow") {
		t.Errorf("eval --config:\n%s", out)
	}
	if _, _, err := runCtl(t, "", "policy", "test", "--config", "nope.yaml", dir); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("--config nope.yaml: %v", err)
	}
}
