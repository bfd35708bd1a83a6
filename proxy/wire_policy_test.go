package proxy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// reloadPolicyV2 is proxytest.DefaultPolicy with one change: humans lose EmptyCall.
var reloadPolicyV2 = strings.Replace(proxytest.DefaultPolicy, `input.rpc in {"EmptyCall", "StreamingOutputCall"}`, `input.rpc == "StreamingOutputCall"`, 1) + `
deny contains "v2: humans may not call EmptyCall" if {
	input.principal.kind == "human"
	input.rpc == "EmptyCall"
}
`

const failingPolicyTest = `package ztp_test

import data.ztp

test_humans_may_upload if ztp.allow with input as {"principal": {"kind": "human"}, "rpc": "StreamingInputCall"}
`

// versionOf is the version Load gives content stored as policies/test.rego.
func policyVersionOf(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "test.rego"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := policy.Load(proxytest.Ctx(t), policy.Options{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("policy.Load: %v", err)
	}
	return e.Version()
}

// replaceFile writes content beside path and renames it over path, as editors and config
// managers do.
func renameReplace(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// policyRecords returns the "policy" audit records written so far. It scans the store
// directly: env.Records waits for outcomes, which must not race with traffic.
func policyRecords(t *testing.T, env *proxytest.Env) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	err := env.Server.AuditStore().Scan(context.Background(), 1, func(r *audit.Record) error {
		if r.Type == audit.TypePolicy {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// waitPolicyCond polls cond until it holds, failing the test after 30s: a reload runs after the
// watcher's debounce, on its own goroutine.
func waitPolicyCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// waitPolicyRecord waits for the n-th policy record (1-based) and returns it.
func waitPolicyRecord(t *testing.T, env *proxytest.Env, n int) *audit.Record {
	t.Helper()
	var recs []*audit.Record
	waitPolicyCond(t, fmt.Sprintf("policy audit record #%d", n), func() bool {
		recs = policyRecords(t, env)
		return len(recs) >= n
	})
	return recs[n-1]
}

func wantPolicyDetail(t *testing.T, rec *audit.Record, version string, parts ...string) {
	t.Helper()
	if rec.PolicyVersion != version {
		t.Errorf("policy record %q: policy_version %s, want %s", rec.Detail, rec.PolicyVersion, version)
	}
	for _, p := range parts {
		if !strings.Contains(rec.Detail, p) {
			t.Errorf("policy record detail %q lacks %q", rec.Detail, p)
		}
	}
}

// TestPolicyReloadUnderTraffic takes a running proxy from a good policy through a broken
// one, a reload by SIGHUP of the broken one, a second good policy, one whose own test
// fails, and back to the first, while clients keep calling. Every decision must come from
// one of the two good policies, whole: the records' policy_version says which, and the
// decision must be the one that version makes.
func TestPolicyReloadUnderTraffic(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	file := filepath.Join(env.Dir, "policies", "test.rego")
	v1, v2 := policyVersionOf(t, proxytest.DefaultPolicy), policyVersionOf(t, reloadPolicyV2)
	ctx := proxytest.Ctx(t)

	// Traffic: alice's EmptyCall is allowed by v1 and denied by v2; the deployer's
	// UnaryCall is allowed by both.
	var (
		wg                     sync.WaitGroup
		stop                   = make(chan struct{})
		aliceOK, aliceDenied   atomic.Int64
		deployerOK, unexpected atomic.Int64
		firstUnexpected        atomic.Value
	)
	alice, deployer := env.Dial(t, proxytest.AliceID), env.Dial(t, proxytest.DeployerID)
	for i := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i%2 == 0 {
					_, err = alice.EmptyCall(ctx, &testgrpc.Empty{})
				} else {
					_, err = deployer.UnaryCall(ctx, &testgrpc.SimpleRequest{})
				}
				st := status.Convert(err)
				switch {
				case i%2 == 1 && err == nil:
					deployerOK.Add(1)
				case i%2 == 0 && err == nil:
					aliceOK.Add(1)
				case i%2 == 0 && st.Code() == codes.PermissionDenied && st.Message() == "ztp: denied: v2: humans may not call EmptyCall":
					aliceDenied.Add(1)
				default:
					unexpected.Add(1)
					firstUnexpected.CompareAndSwap(nil, fmt.Sprintf("client %d: %v", i, err))
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	progress := func(what string, c *atomic.Int64) {
		t.Helper()
		n := c.Load()
		deadline := time.Now().Add(30 * time.Second)
		waitPolicyCond(t, what, func() bool {
			if time.Now().After(deadline) {
				t.Fatalf("no progress: %s (from %d; now alice ok %d, denied %d, deployer ok %d, unexpected %d: %v)",
					what, n, aliceOK.Load(), aliceDenied.Load(), deployerOK.Load(), unexpected.Load(), firstUnexpected.Load())
			}
			return c.Load() >= n+5
		})
	}
	progress("alice's calls under v1", &aliceOK)

	// 1. A policy that does not compile: rejected, v1 stays.
	if err := os.WriteFile(file, []byte("package ztp\n\nallow if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantPolicyDetail(t, waitPolicyRecord(t, env, 1), v1, "policy rejected (file change)", "compile failed", "test.rego:4:")
	progress("alice's calls after the rejection", &aliceOK)

	// 2. The same broken file on SIGHUP: rejected again, and Reload says why.
	err := env.Server.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "compile failed") {
		t.Fatalf("Reload with a broken policy = %v, want a compile error", err)
	}
	wantPolicyDetail(t, waitPolicyRecord(t, env, 2), v1, "policy rejected (SIGHUP)", "compile failed")

	// 3. A good policy, by rename-replace: loaded.
	renameReplace(t, file, reloadPolicyV2)
	wantPolicyDetail(t, waitPolicyRecord(t, env, 3), v2, "policy loaded (file change): "+v2+" replaces "+v1)
	progress("alice's denials under v2", &aliceDenied)

	// 4. A test of its own that fails: rejected, v2 stays.
	testFile := filepath.Join(env.Dir, "policies", "test_test.rego")
	if err := os.WriteFile(testFile, []byte(failingPolicyTest), 0o644); err != nil {
		t.Fatal(err)
	}
	wantPolicyDetail(t, waitPolicyRecord(t, env, 4), v2, "policy rejected (file change)", "tests failed", "test_test.rego:5:1: data.ztp_test.test_humans_may_upload FAIL")
	progress("alice's denials after the rejection", &aliceDenied)

	// 5. Back to v1: the test goes, the policy is replaced.
	if err := os.Remove(testFile); err != nil {
		t.Fatal(err)
	}
	renameReplace(t, file, proxytest.DefaultPolicy)
	wantPolicyDetail(t, waitPolicyRecord(t, env, 5), v1, "policy loaded (file change): "+v1+" replaces "+v2)
	progress("alice's calls under v1 again", &aliceOK)

	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close

	if n := unexpected.Load(); n > 0 {
		t.Errorf("%d calls failed other than by the policies' own decisions; first: %v", n, firstUnexpected.Load())
	}
	if deployerOK.Load() == 0 {
		t.Error("no deployer call went through")
	}

	// Every decision came from v1 or v2, whole.
	counts := map[string]int{}
	for _, r := range env.Records(t) {
		switch {
		case r.Type == audit.TypePolicy:
			counts["policy"]++
		case r.Type != audit.TypeRequest || !strings.HasPrefix(r.Method, "/grpc.testing."):
		case r.PolicyVersion != v1 && r.PolicyVersion != v2:
			t.Errorf("seq %d decided by %q, want %s or %s", r.Seq, r.PolicyVersion, v1, v2)
		case r.Method == "/grpc.testing.TestService/EmptyCall":
			want := map[string]string{v1: "allow", v2: "deny"}[r.PolicyVersion]
			if r.Decision != want {
				t.Errorf("seq %d: alice EmptyCall under %s = %s %v, want %s", r.Seq, r.PolicyVersion, r.Decision, r.Reasons, want)
			}
			counts[r.PolicyVersion]++
		default:
			if r.Decision != "allow" {
				t.Errorf("seq %d: deployer %s = %s %v, want allow", r.Seq, r.Method, r.Decision, r.Reasons)
			}
		}
	}
	if counts[v1] == 0 || counts[v2] == 0 || counts["policy"] != 5 {
		t.Errorf("EmptyCall decisions by v1 %d, by v2 %d, policy records %d; want some of each and 5 policy records (no audit for no-op reloads)", counts[v1], counts[v2], counts["policy"])
	}

	// The control API reports the active policy.
	v, err := ztpv1.NewPolicyClient(env.Conn(t, proxytest.AliceID)).Version(ctx, &ztpv1.PolicyVersionRequest{})
	if err != nil || v.GetVersion() != v1 {
		t.Errorf("Policy/Version = %v, %v; want %s", v, err, v1)
	}
}

// TestPolicyReloadSIGHUPNewPaths: Reload reads policy.paths from the new config, so moving
// the policies is a reload too; the new path is watched from then on, including a swap of
// the symbolic link it is (a release switch with ln -sfn).
func TestPolicyReloadSIGHUPNewPaths(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	for dir, content := range map[string]string{"release-v1": proxytest.DefaultPolicy, "release-v2": reloadPolicyV2} {
		if err := os.MkdirAll(filepath.Join(env.Dir, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(env.Dir, dir, "test.rego"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	current := filepath.Join(env.Dir, "current")
	if err := os.Symlink("release-v2", current); err != nil {
		t.Fatal(err)
	}
	ctx := proxytest.Ctx(t)
	// A call, and reading its record, orders this test after Serve's start: Serve reads
	// the config that Reload replaces (a race the integrator is told about).
	if _, err := env.Dial(t, proxytest.AliceID).EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatalf("alice EmptyCall under v1: %v", err)
	}
	env.Records(t)
	env.RewriteConfig(t, func(cfg string) string { return strings.Replace(cfg, "paths: [policies/]", "paths: [current/]", 1) })
	if err := env.Server.Reload(ctx); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	v1, v2 := policyVersionOf(t, proxytest.DefaultPolicy), policyVersionOf(t, reloadPolicyV2)
	_, err := env.Dial(t, proxytest.AliceID).EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "alice EmptyCall after the reload", err, codes.PermissionDenied, "v2: humans may not call EmptyCall")
	recs := policyRecords(t, env)
	if len(recs) != 1 {
		t.Fatalf("policy records %d, want 1", len(recs))
	}
	wantPolicyDetail(t, recs[0], v2, "policy loaded (SIGHUP): "+v2+" replaces "+v1)

	// Switch the release: a new link renamed over the old one.
	if err := os.Symlink("release-v1", current+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(current+".tmp", current); err != nil {
		t.Fatal(err)
	}
	wantPolicyDetail(t, waitPolicyRecord(t, env, 2), v1, "policy loaded (file change): "+v1+" replaces "+v2)

	// And the new target's files are watched.
	renameReplace(t, filepath.Join(env.Dir, "release-v1", "test.rego"), reloadPolicyV2)
	wantPolicyDetail(t, waitPolicyRecord(t, env, 3), v2, "policy loaded (file change): "+v2+" replaces "+v1)
}

// TestPolicyTestsGateStartup: the proxy does not start with a policy whose own tests fail.
func TestPolicyTestsGateStartup(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	if err := os.WriteFile(filepath.Join(env.Dir, "policies", "test_test.rego"), []byte(failingPolicyTest), 0o644); err != nil {
		t.Fatal(err)
	}
	// The running proxy rejects the change (and keeps its policy) ...
	wantPolicyDetail(t, waitPolicyRecord(t, env, 1), policyVersionOf(t, proxytest.DefaultPolicy), "tests failed")

	// ... and a new proxy refuses to start with it.
	env.Stop(t)
	srv, err := env.NewServer(t)
	if err == nil {
		srv.Shutdown(context.Background())
		t.Fatal("proxy.New with a policy whose tests fail succeeded")
	}
	if !strings.Contains(err.Error(), "tests failed") || !strings.Contains(err.Error(), "test_humans_may_upload") {
		t.Errorf("proxy.New = %v, want the failing test named", err)
	}
}
