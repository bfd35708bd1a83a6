package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// writeFiles creates files (slash paths) under a new temporary directory.
func writePolicyFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const ctlPolicy = `package ztp

import data.ztp.lib

default allow := false

allow if lib.is_automation

allow if {
	lib.is_human
	lib.read_only
}

deny contains "humans change things only under break-glass" if {
	lib.is_human
	lib.mutating
}

forbid contains "never the whole keyspace" if lib.whole_keyspace

budgets contains {"key": "member-remove", "cost": 1} if input.rpc == "MemberRemove"
`

const ctlTests = `package ztp_test

import data.ztp

test_deployer_puts if ztp.allow with input as {"principal": {"kind": "automation"}, "rpc": "Put"}

test_human_reads if ztp.allow with input as {"principal": {"kind": "human"}, "rpc": "Range"}
`

func TestPolicyTestCommand(t *testing.T) {
	good := writePolicyFiles(t, map[string]string{"p.rego": ctlPolicy, "p_test.rego": ctlTests})
	failing := writePolicyFiles(t, map[string]string{"p.rego": ctlPolicy, "p_test.rego": ctlTests + `
test_human_puts if ztp.allow with input as {"principal": {"kind": "human"}, "rpc": "Put"}
`})
	broken := writePolicyFiles(t, map[string]string{"p.rego": "package ztp\n\nallow if x\n", "p_test.rego": ctlTests})
	untested := writePolicyFiles(t, map[string]string{"p.rego": ctlPolicy})
	tests := []struct {
		name    string
		args    []string
		errHas  string // "" = success
		outHas  []string
		outNot  []string
		inCwdOf string // run with no path argument from this directory
	}{
		{
			name:   "passing, quiet",
			args:   []string{good},
			outHas: []string{"PASS: 2/2\n"},
			outNot: []string{"PASS  "},
		},
		{
			name:   "verbose lists each test with its location",
			args:   []string{"-v", good},
			outHas: []string{"PASS  " + filepath.Join(good, "p_test.rego") + ":5:1: data.ztp_test.test_deployer_puts (", "PASS: 2/2"},
		},
		{
			name:   "run filter",
			args:   []string{"-v", "--run", "reads$", good},
			outHas: []string{"test_human_reads", "PASS: 1/1"},
			outNot: []string{"test_deployer_puts"},
		},
		{
			name:   "a failing test fails the command",
			args:   []string{failing},
			errHas: "1 of 3 tests did not pass",
			outHas: []string{"FAIL  " + filepath.Join(failing, "p_test.rego") + ":9:1: data.ztp_test.test_human_puts", "PASS: 2/3  FAIL: 1"},
		},
		{
			name:   "compile error with file:line:col",
			args:   []string{broken},
			errHas: filepath.Join(broken, "p.rego") + ":3:10: rego_unsafe_var_error: var x is unsafe",
		},
		{
			name:   "coverage",
			args:   []string{"--coverage", good},
			outHas: []string{"coverage: ", filepath.Join(good, "p.rego") + ": ", "not covered: "},
			outNot: []string{"lib.rego"},
		},
		{
			name:   "threshold met",
			args:   []string{"--threshold", "20", good},
			outHas: []string{"(threshold 20%)"},
		},
		{
			name:   "threshold missed",
			args:   []string{"--threshold", "99", good},
			errHas: "is below --threshold 99%",
		},
		{
			name:   "no tests",
			args:   []string{untested},
			errHas: "no test_ rules found in " + untested,
		},
		{
			name:    "current directory by default",
			inCwdOf: good,
			outHas:  []string{"PASS: 2/2"},
		},
		{
			name:   "bad format",
			args:   []string{"--format", "tap", good},
			errHas: `"--format" flag: must be one of text | json | junit`,
		},
		{
			name:   "bad threshold",
			args:   []string{"--threshold", "120", good},
			errHas: "--threshold must be a percentage",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.inCwdOf != "" {
				t.Chdir(tc.inCwdOf)
			}
			out, _, err := runCtl(t, "", append([]string{"policy", "test"}, tc.args...)...)
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatalf("ztpctl policy test %v: %v\n%s", tc.args, err, out)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("ztpctl policy test %v = %v, want an error containing %q\n%s", tc.args, err, tc.errHas, out)
			}
			for _, s := range tc.outHas {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.outNot {
				if strings.Contains(out, s) {
					t.Errorf("output has %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestPolicyTestMachineFormats(t *testing.T) {
	dir := writePolicyFiles(t, map[string]string{"p.rego": ctlPolicy, "p_test.rego": ctlTests + `
test_human_puts if ztp.allow with input as {"principal": {"kind": "human"}, "rpc": "Put"}

test_builtin_error if to_number("x") > 1
`})
	t.Run("json", func(t *testing.T) {
		out, _, err := runCtl(t, "", "policy", "test", "-o", "json", "--coverage", dir)
		if err == nil {
			t.Fatal("policy test with failing tests succeeded")
		}
		var rep testReportJSON
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		want := map[string]int{"total": 4, "pass": 2, "fail": 1, "error": 1, "skip": 0}
		for k, v := range want {
			if rep.Summary[k] != v {
				t.Errorf("summary[%s] = %d, want %d (%v)", k, rep.Summary[k], v, rep.Summary)
			}
		}
		if rep.Coverage == nil || rep.Coverage.Percent <= 0 || len(rep.Coverage.Files) != 1 {
			t.Errorf("coverage = %+v, want one file, partly covered", rep.Coverage)
		}
		for _, r := range rep.Tests {
			if r.Name == "test_builtin_error" && (r.Outcome != "error" || !strings.Contains(r.Detail, "p_test.rego:11:23: eval_builtin_error: to_number")) {
				t.Errorf("test_builtin_error = %+v, want an error at p_test.rego:11:23", r)
			}
		}
	})
	t.Run("junit", func(t *testing.T) {
		out, _, err := runCtl(t, "", "policy", "test", "--format", "junit", dir)
		if err == nil {
			t.Fatal("policy test with failing tests succeeded")
		}
		var suites junitSuites
		if err := xml.Unmarshal([]byte(out), &suites); err != nil {
			t.Fatalf("output is not XML: %v\n%s", err, out)
		}
		if suites.Tests != 4 || suites.Failures != 1 || suites.Errors != 1 || len(suites.Suites) != 1 {
			t.Fatalf("testsuites = %+v, want 4 tests, 1 failure, 1 error in one suite", suites)
		}
		for _, c := range suites.Suites[0].Cases {
			if c.Name == "test_human_puts" && (c.Failure == nil || c.Line != 9 || !strings.HasSuffix(c.File, "p_test.rego")) {
				t.Errorf("test_human_puts = %+v, want a failure at p_test.rego line 9", c)
			}
			if c.Name == "test_builtin_error" && (c.Error == nil || !strings.Contains(c.Error.Message, "to_number")) {
				t.Errorf("test_builtin_error = %+v, want an error naming to_number", c)
			}
		}
	})
}

func TestPolicyEvalCommand(t *testing.T) {
	dir := writePolicyFiles(t, map[string]string{"p.rego": ctlPolicy})
	human := `{"principal": {"id": "spiffe://example.org/user/alice", "kind": "human", "groups": ["sre"]}, "method": "/etcdserverpb.KV/Put", "rpc": "Put", "request": {"key": "Zm9v"}, "request_decoded": true}`
	wipe := `{"principal": {"kind": "automation"}, "rpc": "DeleteRange", "request": {"key": "AA==", "rangeEnd": "AA=="}, "request_decoded": true}`
	remove := `{"principal": {"kind": "automation"}, "rpc": "MemberRemove", "request": {"ID": "1"}, "request_decoded": true}`
	inputFile := filepath.Join(dir, "human.json")
	if err := os.WriteFile(inputFile, []byte(human), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		stdin  string
		args   []string
		errHas string
		want   map[string]any // fields of the JSON output
		outHas []string       // text output
	}{
		{
			name: "human put is denied",
			args: []string{"--input", inputFile, "-o", "json"},
			want: map[string]any{
				"verdict": "deny", "forward": false, "allow": false,
				"deny":           []any{"humans change things only under break-glass"},
				"why":            "deny matched; an active break-glass grant would override it",
				"status_message": "PERMISSION_DENIED: ztp: denied: humans change things only under break-glass",
			},
		},
		{
			name: "break-glass overrides deny",
			args: []string{"--input", inputFile, "--breakglass", "bg-42", "-o", "json"},
			want: map[string]any{"verdict": "allow", "forward": true, "breakglass_grant": "bg-42", "reasons": []any{"humans change things only under break-glass"}},
		},
		{
			name:  "break-glass never overrides forbid",
			stdin: wipe,
			args:  []string{"--input", "-", "--breakglass", "bg-42", "-o", "json"},
			want:  map[string]any{"verdict": "deny", "allow": true, "forbid": []any{"never the whole keyspace"}, "why": "forbid matched; nothing overrides forbid, not even break-glass"},
		},
		{
			name:  "budgets",
			stdin: remove,
			args:  []string{"--input", "-", "-o", "json"},
			want:  map[string]any{"verdict": "allow", "budgets": []any{map[string]any{"key": "member-remove", "cost": 1.0}}},
		},
		{
			name: "dryrun",
			args: []string{"--input", inputFile, "--mode", "dryrun", "-o", "json"},
			want: map[string]any{"verdict": "dryrun_deny", "forward": true, "mode": "dryrun"},
		},
		{
			name: "text",
			args: []string{"--input", inputFile},
			outHas: []string{
				"verdict:  deny\n",
				"reasons:  humans change things only under break-glass\n",
				"allow:    false\n",
				"forbid:   -\n",
				"policy:   sha256:",
			},
		},
		{
			name:   "input not an object",
			stdin:  "[1]",
			args:   []string{"--input", "-"},
			errHas: "--input -: not a JSON object",
		},
		{
			name:   "missing input",
			args:   []string{"--input", filepath.Join(dir, "nope.json")},
			errHas: "no such file",
		},
		{
			name:   "policy does not compile",
			args:   []string{"--input", inputFile, "--policy", writePolicyFiles(t, map[string]string{"bad.rego": "package ztp\n\nallow if {"})},
			errHas: "rego_parse_error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"policy", "eval"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--policy") {
				args = append(args, "--policy", dir)
			}
			out, _, err := runCtl(t, tc.stdin, args...)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("ztpctl %v = %v, want an error containing %q", args, err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("ztpctl %v: %v", args, err)
			}
			for _, s := range tc.outHas {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			if tc.want == nil {
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			for k, v := range tc.want {
				g, _ := json.Marshal(got[k])
				w, _ := json.Marshal(v)
				if !bytes.Equal(g, w) {
					t.Errorf("%s = %s, want %s", k, g, w)
				}
			}
		})
	}
}

// candidatePolicy differs from proxytest.DefaultPolicy: humans lose EmptyCall and gain
// UnaryCall, and uploads are no longer denied.
const candidatePolicy = `package ztp

default allow := false

allow if input.principal.kind == "automation"

allow if {
	input.principal.kind == "human"
	input.rpc in {"UnaryCall", "StreamingOutputCall", "StreamingInputCall"}
}

forbid contains "payload 'forbidden' is never allowed" if {
	base64.decode(input.request.payload.body) == "forbidden"
}
`

// snapshot copies the live audit file of env consistently (a bbolt read transaction),
// as a backup tool would, and returns the copy's path.
func snapshotAudit(t *testing.T, env *proxytest.Env) string {
	t.Helper()
	env.Server.Pipeline().WaitOutcomes()
	path := filepath.Join(t.TempDir(), "audit-copy.db")
	err := env.Server.AuditStore().DB().View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) })
	if err != nil {
		t.Fatalf("copy audit file: %v", err)
	}
	return path
}

// exportJSONL writes the records of an audit file as JSON lines, as ztpctl audit export
// does.
func exportAuditJSONL(t *testing.T, db string) string {
	t.Helper()
	r, err := audit.OpenReader(db, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var buf bytes.Buffer
	err = r.ScanLines(context.Background(), 1, func(_ uint64, line []byte) error {
		buf.Write(line)
		buf.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "records.jsonl")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPolicyReplayCommand records real traffic through a proxy and replays it under a
// changed policy: the differences it reports are the ones the change makes.
func TestPolicyReplayCommand(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	ctx := proxytest.Ctx(t)
	alice := env.Dial(t, proxytest.AliceID)
	deployer := env.Dial(t, proxytest.DeployerID)
	for range 3 {
		if _, err := alice.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
			t.Fatalf("alice EmptyCall: %v", err)
		}
	}
	_, err := alice.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	proxytest.WantCode(t, "alice UnaryCall", err, codes.PermissionDenied, "not allowed by policy")
	for _, body := range []string{"ok", "ok", "forbidden"} {
		_, err := deployer.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}})
		if body == "forbidden" {
			proxytest.WantCode(t, "deployer UnaryCall forbidden", err, codes.PermissionDenied, "never allowed")
		} else if err != nil {
			t.Fatalf("deployer UnaryCall: %v", err)
		}
	}
	up, err := alice.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	up.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}})
	_, err = up.CloseAndRecv()
	proxytest.WantCode(t, "alice StreamingInputCall", err, codes.PermissionDenied, "humans may not upload")
	if _, err := ztpv1.NewPolicyClient(env.Conn(t, proxytest.AliceID)).Version(ctx, &ztpv1.PolicyVersionRequest{}); err != nil {
		t.Fatalf("Policy/Version: %v", err)
	}
	_, err = env.Dial(t, proxytest.StrangerID).EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "stranger EmptyCall", err, codes.Unauthenticated, "")

	candidate := writePolicyFiles(t, map[string]string{"test.rego": candidatePolicy})
	unchanged := filepath.Join(env.Dir, "policies")

	// The proxy holds its file: the error says what to do instead.
	_, _, err = runCtl(t, "", "policy", "replay", "--policy", candidate, "--db", filepath.Join(env.Dir, "audit.db"))
	if err == nil || !strings.Contains(err.Error(), "a running ztp-proxy holds it") || !strings.Contains(err.Error(), "copy") {
		t.Fatalf("replay of the live file = %v, want a lock error that suggests a copy", err)
	}

	db := snapshotAudit(t, env)
	jsonl := exportAuditJSONL(t, db)
	tests := []struct {
		name           string
		args           []string
		errHas         string
		a2d, d2a       int
		replayed       int
		groupsA2D      map[string]int // method → count
		groupsD2A      map[string]int
		skippedControl int
	}{
		{
			name: "changed policy", args: []string{"--policy", candidate, "--db", db},
			a2d: 3, d2a: 2, replayed: 8, skippedControl: 1,
			groupsA2D: map[string]int{"/grpc.testing.TestService/EmptyCall": 3},
			groupsD2A: map[string]int{"/grpc.testing.TestService/UnaryCall": 1, "/grpc.testing.TestService/StreamingInputCall": 1},
		},
		{
			name: "from an export", args: []string{"--policy", candidate, "--jsonl", jsonl},
			a2d: 3, d2a: 2, replayed: 8, skippedControl: 1,
		},
		{
			name: "the recorded policy is a fixed point", args: []string{"--policy", unchanged, "--db", db},
			replayed: 8, skippedControl: 1,
		},
		{
			name: "since the future", args: []string{"--policy", candidate, "--db", db, "--since", "2100-01-01"},
			skippedControl: 1,
		},
		{
			name: "fail on allow-to-deny", args: []string{"--policy", candidate, "--db", db, "--fail-on", "allow-to-deny"},
			errHas: "3 allow→deny changes (--fail-on allow-to-deny)", a2d: 3, d2a: 2, replayed: 8, skippedControl: 1,
		},
		{
			name: "fail on deny-to-allow", args: []string{"--policy", candidate, "--db", db, "--fail-on", "deny-to-allow"},
			errHas: "2 deny→allow changes", a2d: 3, d2a: 2, replayed: 8, skippedControl: 1,
		},
		{
			name: "fail on any, nothing changed", args: []string{"--policy", unchanged, "--db", db, "--fail-on", "any"},
			replayed: 8, skippedControl: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"policy", "replay", "-o", "json"}, tc.args...)
			out, _, err := runCtl(t, "", args...)
			switch {
			case tc.errHas == "" && err != nil:
				t.Fatalf("ztpctl %v: %v", args, err)
			case tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("ztpctl %v = %v, want an error containing %q", args, err, tc.errHas)
			}
			var rep policy.ReplayReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if rep.AllowToDeny.Count != tc.a2d || rep.DenyToAllow.Count != tc.d2a || rep.Replayed != tc.replayed {
				t.Errorf("allow→deny %d, deny→allow %d, replayed %d; want %d, %d, %d\n%s", rep.AllowToDeny.Count, rep.DenyToAllow.Count, rep.Replayed, tc.a2d, tc.d2a, tc.replayed, out)
			}
			if rep.Skipped[policy.SkipControlAPI] != tc.skippedControl || rep.Skipped[policy.SkipBeforePolicy] != 1 {
				t.Errorf("skipped = %v, want %d control API and 1 refused before policy (the stranger)", rep.Skipped, tc.skippedControl)
			}
			for _, c := range []struct {
				want map[string]int
				got  policy.ReplayChange
			}{{tc.groupsA2D, rep.AllowToDeny}, {tc.groupsD2A, rep.DenyToAllow}} {
				if c.want == nil {
					continue
				}
				got := map[string]int{}
				for _, g := range c.got.Groups {
					got[g.Method] = g.Count
					if g.Principal != proxytest.AliceID || len(g.Examples) == 0 {
						t.Errorf("group %+v, want alice with example seqs", g)
					}
				}
				if len(got) != len(c.want) {
					t.Errorf("groups %v, want %v", got, c.want)
				}
				for m, n := range c.want {
					if got[m] != n {
						t.Errorf("group %s: %d, want %d", m, got[m], n)
					}
				}
			}
		})
	}

	// The examples name real records: each allow→deny example is an allowed EmptyCall.
	out, _, err := runCtl(t, "", "policy", "replay", "-o", "json", "--policy", candidate, "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	var rep policy.ReplayReport
	json.Unmarshal([]byte(out), &rep)
	bySeq := map[uint64]*audit.Record{}
	if err := audit.ScanFile(ctx, db, 1, func(r *audit.Record) error { bySeq[r.Seq] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, seq := range rep.AllowToDeny.Groups[0].Examples {
		if r := bySeq[seq]; r == nil || r.Method != "/grpc.testing.TestService/EmptyCall" || r.Decision != "allow" {
			t.Errorf("example seq %d = %+v, want an allowed EmptyCall", seq, r)
		}
	}

	text, _, err := runCtl(t, "", "policy", "replay", "--policy", candidate, "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"unchanged: 3  allow→deny: 3  deny→allow: 2",
		"skipped: 1 control api, 1 refused before policy",
		"allow → deny (3)\n      3  /grpc.testing.TestService/EmptyCall  " + proxytest.AliceID + "  e.g. seq ",
		"candidate says: not allowed by policy",
		"was denied for: humans may not upload",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("text output lacks %q:\n%s", s, text)
		}
	}
}

// TestPolicyReplayFidelity: a policy that reads every field of the input decides recorded
// traffic exactly as the proxy did, given the descriptors for the streaming flags.
func TestPolicyReplayFidelity(t *testing.T) {
	const rich = `package ztp

default allow := false

allow if {
	input.principal.kind == "automation"
	"deployers" in input.principal.groups
	input.principal.authn == "mtls"
	input.justification == "deploy"
	input.ticket == "CHG-1"
	input.metadata["x-request-id"][0] == "r-1"
	input.upstream == "test"
	input.service == "grpc.testing.TestService"
	time.parse_rfc3339_ns(input.time) > 0
	input.breakglass.active == false
}

allow if {
	input.principal.kind == "human"
	input.stream.server_streaming
	not input.stream.client_streaming
}

allow if {
	input.principal.kind == "human"
	input.stream.client_streaming
	to_number(input.stream.message_index) < 2
}

deny contains "odd payload" if input.request.payload.body == "b2Rk"
`
	env := proxytest.Start(t, proxytest.Options{Policy: rich})
	ctx := proxytest.Ctx(t)
	deployer := env.Dial(t, proxytest.DeployerID)
	alice := env.Dial(t, proxytest.AliceID)
	withMD := metadata.AppendToOutgoingContext(ctx, "x-ztp-justification", "deploy", "x-ztp-ticket", "CHG-1", "x-request-id", "r-1")
	if _, err := deployer.UnaryCall(withMD, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("deployer with justification: %v", err)
	}
	_, err := deployer.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	proxytest.WantCode(t, "deployer without justification", err, codes.PermissionDenied, "")
	_, err = deployer.UnaryCall(withMD, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("odd")}})
	proxytest.WantCode(t, "odd payload", err, codes.PermissionDenied, "odd payload")
	down, err := alice.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Recv(); err != io.EOF {
		t.Fatalf("StreamingOutputCall: %v, want EOF", err)
	}
	up, err := alice.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		up.Send(&testgrpc.StreamingInputCallRequest{})
	}
	_, err = up.CloseAndRecv()
	proxytest.WantCode(t, "third upload message", err, codes.PermissionDenied, "")

	db := snapshotAudit(t, env)
	protoset := filepath.Join(env.Dir, "test.protoset")
	for _, tc := range []struct {
		name string
		args []string
		a2d  int
	}{
		{"with descriptors", []string{"--descriptors", protoset}, 0},
		// Without them the streaming flags are false: alice's stream messages change.
		{"without descriptors", nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, out := replayReport(t, append([]string{"--policy", filepath.Join(env.Dir, "policies"), "--db", db}, tc.args...)...)
			if rep.Replayed != 7 || rep.AllowToDeny.Count != tc.a2d || rep.DenyToAllow.Count != 0 || rep.EvalErrors != 0 {
				t.Errorf("replayed %d (want 7), allow→deny %d (want %d), deny→allow %d, errors %d (want 0)\n%s",
					rep.Replayed, rep.AllowToDeny.Count, tc.a2d, rep.DenyToAllow.Count, rep.EvalErrors, out)
			}
		})
	}
}

// TestPolicyReplayRedacted: fields hidden by audit.redact read "[redacted]" on replay, so
// a policy that reads them cannot be replayed faithfully; the report shows it.
func TestPolicyReplayRedacted(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Audit: "  redact: [\"payload.body\"]\n"})
	ctx := proxytest.Ctx(t)
	if _, err := env.Dial(t, proxytest.DeployerID).UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ok")}}); err != nil {
		t.Fatal(err)
	}
	db := snapshotAudit(t, env)
	out, _, err := runCtl(t, "", "policy", "replay", "-o", "json", "--policy", filepath.Join(env.Dir, "policies"), "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	var rep policy.ReplayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	// base64.decode("[redacted]") fails: the unchanged policy denies on replay.
	if rep.EvalErrors != 1 || rep.AllowToDeny.Count != 1 {
		t.Errorf("eval errors %d, allow→deny %d; want 1 and 1\n%s", rep.EvalErrors, rep.AllowToDeny.Count, out)
	}
}

// replayReport runs ztpctl policy replay -o json with args and returns the report and its
// JSON.
func replayReport(t *testing.T, args ...string) (policy.ReplayReport, string) {
	t.Helper()
	args = append([]string{"policy", "replay", "-o", "json"}, args...)
	out, _, err := runCtl(t, "", args...)
	if err != nil {
		t.Fatalf("ztpctl %v: %v", args, err)
	}
	var rep policy.ReplayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	return rep, out
}

// TestPolicyReplayOldRecords: a record written before the proxy rendered zero values lacks
// them; with --descriptors replay fills them in, so a rule comparing with zero decides it as
// the proxy decides today, and without them the report says what is missing.
func TestPolicyReplayOldRecords(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	candidate := writePolicyFiles(t, map[string]string{"p.rego": `package ztp

default allow := false

allow if {
	input.request.responseSize == 0
	input.request.payload.type == "COMPRESSABLE"
}
`})
	old := `{"seq":7,"time":"2026-11-26T10:00:00Z","type":"request","principal":{"id":"spiffe://example.org/ns/prod/sa/deployer","kind":"automation","groups":["deployers"],"authn":"mtls"},` +
		`"method":"/grpc.testing.TestService/UnaryCall","upstream":"test","message_index":0,"request":{"payload":{"body":"b2s="}},"request_decoded":true,` +
		`"decision":"allow","policy_version":"sha256:old","prev_hash":"","hash":""}` + "\n"
	jsonl := filepath.Join(t.TempDir(), "old.jsonl")
	if err := os.WriteFile(jsonl, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	protoset := filepath.Join(env.Dir, "test.protoset")
	for _, tc := range []struct {
		name          string
		args          []string
		a2d, reshaped int
		textNote      string
	}{
		{"with descriptors", []string{"--descriptors", protoset}, 0, 1, "reshaped: 1 records written before zero values were rendered"},
		{"without descriptors", nil, 1, 0, "note: without --descriptors, requests are replayed as recorded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, out := replayReport(t, append([]string{"--policy", candidate, "--jsonl", jsonl}, tc.args...)...)
			if rep.Replayed != 1 || rep.AllowToDeny.Count != tc.a2d || rep.Reshaped != tc.reshaped {
				t.Errorf("replayed %d, allow→deny %d, reshaped %d; want 1, %d, %d\n%s", rep.Replayed, rep.AllowToDeny.Count, rep.Reshaped, tc.a2d, tc.reshaped, out)
			}
			text, _, err := runCtl(t, "", append([]string{"policy", "replay", "--policy", candidate, "--jsonl", jsonl}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(text, tc.textNote) {
				t.Errorf("text report lacks %q:\n%s", tc.textNote, text)
			}
		})
	}
}

func TestPolicyReplayFlagErrors(t *testing.T) {
	dir := writePolicyFiles(t, map[string]string{"p.rego": ctlPolicy})
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no source", []string{"--policy", dir}, "exactly one of --db and --jsonl"},
		{"two sources", []string{"--policy", dir, "--db", "a", "--jsonl", "b"}, "exactly one of --db and --jsonl"},
		{"bad fail-on", []string{"--policy", dir, "--db", "a", "--fail-on", "some"}, `"--fail-on" flag: must be one of`},
		{"bad since", []string{"--policy", dir, "--db", "a", "--since", "yesterday"}, "--since"},
		{"missing file", []string{"--policy", dir, "--db", filepath.Join(dir, "none.db")}, "none.db"},
		{"bad jsonl", []string{"--policy", dir, "--jsonl", "-"}, "--jsonl -:1"},
		{"bad protoset", []string{"--policy", dir, "--db", "a", "--descriptors", filepath.Join(dir, "p.rego")}, "--descriptors"},
		{"no policy flag", []string{"--db", "a"}, `"policy" not set`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCtl(t, "not json\n", append([]string{"policy", "replay"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ztpctl policy replay %v = %v, want an error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestPolicyLibCommand(t *testing.T) {
	out, _, err := runCtl(t, "", "policy", "lib")
	if err != nil || out != policy.Library() || !strings.Contains(out, "package ztp.lib") {
		t.Errorf("ztpctl policy lib = %.40q…, %v; want the library source", out, err)
	}
}

func TestPolicyCommandsHaveExamples(t *testing.T) {
	for _, c := range newPolicyCommand(&globalOptions{}).Commands() {
		if c.Example == "" {
			t.Errorf("ztpctl policy %s has no Example", c.Name())
		}
	}
}
