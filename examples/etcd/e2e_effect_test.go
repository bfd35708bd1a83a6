package etcd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/exampletest"
	"github.com/ztp-dev/ztp/policy"
)

const (
	bulkKeys  = 120 // /e2e/bulk/001 … /e2e/bulk/120, written straight into etcd
	maxPerDel = 50  // etcd.rego's max_keys_per_call
)

// TestEtcdEffectQueries drives the example as shipped with the real etcd and etcdctl, on a
// keyspace of more than max_keys_per_call keys, and shows that the policy judges what a
// call would do, not how it is spelt: every spelling of "delete everything" is forbidden,
// break-glass or not; a read-only human needs break-glass for a bulk get or a wide watch;
// and once the deployer's delete budget is spent, neither a delete nor the lease trick
// (attach existing keys to a lease, revoke it) removes a single key more.
func TestEtcdEffectQueries(t *testing.T) {
	requireEtcd(t)
	ctx := testCtx(t, 4*time.Minute)
	ctl := buildCtl(t)
	etcd, px := startExample(ctx, t)
	deployer := px.client("deployer", deployerID)
	alice := px.client("alice", aliceID)
	bob := px.client("bob", bobLeadID) // a lead: approves alice's grant

	// The keyspace: written into etcd directly (setup, not under test), in one Txn.
	var ops strings.Builder
	ops.WriteString("\n")
	for i := 1; i <= bulkKeys; i++ {
		fmt.Fprintf(&ops, "put /e2e/bulk/%03d v%d\n", i, i)
	}
	ops.WriteString("\n\n")
	if out, err := etcdDirect(ctx, etcd, ops.String(), "txn"); err != nil || !strings.HasPrefix(out, "SUCCESS") {
		t.Fatalf("etcdctl txn (direct) = %q, %v", out, err)
	}
	total := keyCount(ctx, t, etcd)
	if total < bulkKeys {
		t.Fatalf("etcd holds %d keys, want at least %d", total, bulkKeys)
	}

	// refused runs etcdctl and checks that it failed with want in its error and that etcd
	// never saw the method (unless method is "": a refused Range cannot be told from the
	// count-only Range the policy asked).
	refused := func(t *testing.T, c client, service, method, want string, args ...string) {
		t.Helper()
		var before int64
		if method != "" {
			before = etcd.started(ctx, t, service, method)
		}
		out, stderr, err := px.etcdctl(ctx, c, "", args...)
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("%s etcdctl %q = %q, %v (stderr %q), want a failure with %q", c.name, args, out, err, stderr, want)
		}
		if method == "" {
			return
		}
		if after := etcd.started(ctx, t, service, method); after != before {
			t.Errorf("%s etcdctl %q reached etcd (%s/%s started %d -> %d)", c.name, args, service, method, before, after)
		}
	}
	wipes := [][]string{
		{"del", "\x01", "\xff\xff\xff\xff"},
		{"del", "--prefix", "/"},
		{"del", "", "--from-key"},
		{"del", "", "--prefix"},
	}
	tooMany := func(n int) string {
		return fmt.Sprintf("PermissionDenied desc = ztp: denied: the call would remove %d keys; at most %d may go in one call", n, maxPerDel)
	}

	t.Run("wipes are forbidden", func(t *testing.T) {
		for _, args := range wipes {
			refused(t, deployer, "etcdserverpb.KV", "DeleteRange", tooMany(total), args...)
		}
		// A Txn deleting 30 and 30 keys: each under the maximum, the call above it.
		txn := "\n\ndel /e2e/bulk/001 /e2e/bulk/031\ndel /e2e/bulk/031 /e2e/bulk/061\n\n\n"
		before := etcd.started(ctx, t, "etcdserverpb.KV", "Txn")
		if out, stderr, err := px.etcdctl(ctx, deployer, txn, "txn"); err == nil || !strings.Contains(stderr, tooMany(60)) {
			t.Errorf("deployer etcdctl txn of two 30-key deletes = %q, %v (stderr %q), want %q", out, err, stderr, tooMany(60))
		}
		if etcd.started(ctx, t, "etcdserverpb.KV", "Txn") != before {
			t.Error("the refused Txn reached etcd")
		}
	})

	t.Run("bulk reads need break-glass", func(t *testing.T) {
		refused(t, alice, "", "", fmt.Sprintf("PermissionDenied desc = ztp: denied: reading %d keys at once needs break-glass (more than 100)", total), "get", "", "--from-key", "--keys-only")
		refused(t, alice, "", "", fmt.Sprintf("PermissionDenied desc = ztp: denied: reading %d keys at once needs break-glass (more than 100)", total), "get", "\x01", "\xff\xff\xff\xff", "--keys-only")
		// Small and limited reads need nothing.
		if out, stderr, err := px.etcdctl(ctx, alice, "", "get", "--prefix", "/e2e/bulk/00", "--keys-only"); err != nil || strings.Count(out, "/e2e/bulk/00") != 9 {
			t.Errorf("alice etcdctl get --prefix /e2e/bulk/00 = %q, %v (stderr %q), want 9 keys", out, err, stderr)
		}
		if out, stderr, err := px.etcdctl(ctx, alice, "", "get", "", "--from-key", "--limit", "5", "--keys-only"); err != nil || strings.Count(strings.TrimSpace(out), "\n\n") != 4 {
			t.Errorf("alice etcdctl get --from-key --limit 5 = %q, %v (stderr %q), want 5 keys", out, err, stderr)
		}
		for _, args := range [][]string{{"watch", "--prefix", ""}, {"watch", "--prefix", "/"}} {
			out, stderr, err := px.etcdctl(ctx, alice, "", args...)
			if err == nil || !strings.Contains(out+stderr, "needs break-glass") {
				t.Errorf("alice etcdctl %q = %q, %v (stderr %q), want the watch refused: needs break-glass", args, out, err, stderr)
			}
		}
	})

	t.Run("under break-glass", func(t *testing.T) {
		id := grant(ctx, t, ctl, px, alice, bob, "/etcdserverpb.KV/*", "/etcdserverpb.Watch/*")
		t.Logf("grant %s active", id)
		out, stderr, err := px.etcdctl(ctx, alice, "", "get", "", "--from-key", "--keys-only")
		if err != nil || strings.Count(out, "/e2e/bulk/") != bulkKeys {
			t.Errorf("alice etcdctl get \"\" --from-key under break-glass = %d bulk keys, %v (stderr %q), want %d", strings.Count(out, "/e2e/bulk/"), err, stderr, bulkKeys)
		}
		watches := etcd.started(ctx, t, "etcdserverpb.Watch", "Watch")
		w := px.start(ctx, t, alice, "watch", "--prefix", "")
		exampletest.WaitFor(ctx, t, 15*time.Second, "the break-glass watch to reach etcd", func() bool {
			return etcd.started(ctx, t, "etcdserverpb.Watch", "Watch") == watches+1
		})
		// The watch starts at etcd's revision when its create request arrives, a moment
		// after the stream: write until it shows the key.
		var last time.Time
		exampletest.WaitFor(ctx, t, 15*time.Second, "the break-glass watch to see a new key", func() bool {
			if time.Since(last) > 500*time.Millisecond {
				last = time.Now()
				if out, err := etcdDirect(ctx, etcd, "", "put", "/e2e/under-glass", "seen"); err != nil {
					t.Fatalf("etcdctl put (direct) = %q, %v", out, err)
				}
			}
			return strings.Contains(w.Stdout.String(), "/e2e/under-glass")
		})
		w.Stop(t, syscall.SIGTERM, 5*time.Second)
		total++ // /e2e/under-glass
		// Forbid holds under break-glass: no spelling removes more than the maximum.
		for _, args := range wipes {
			refused(t, alice, "etcdserverpb.KV", "DeleteRange", tooMany(total), args...)
		}
	})

	t.Run("the delete budget bounds what the deployer removes", func(t *testing.T) {
		// Spend the hourly budget (100 keys) 10 keys at a time until the proxy refuses.
		removed := 0
		for i := 0; ; i++ {
			if i >= 11 {
				t.Fatalf("deleted %d keys in 10-key steps, budget never ran out (delete: limit is 100 per hour)", removed)
			}
			from, to := fmt.Sprintf("/e2e/bulk/%03d", 1+10*i), fmt.Sprintf("/e2e/bulk/%03d", 11+10*i)
			out, stderr, err := px.etcdctl(ctx, deployer, "", "del", from, to)
			if err != nil {
				if !strings.Contains(stderr, "ResourceExhausted desc = ztp: change budget delete:etcd exhausted") {
					t.Fatalf("deployer etcdctl del %s %s = %q, %v (stderr %q), want OK or the budget exhausted", from, to, out, err, stderr)
				}
				break
			}
			removed += 10
		}
		if removed > 100 || removed < 90 {
			t.Errorf("the deployer removed %d keys before the budget ran out, want 90 to 100 (the budget is 100 keys per hour)", removed)
		}
		before := keyCount(ctx, t, etcd)

		// The lease trick: attach existing keys to a lease, then revoke it.
		out, stderr, err := px.etcdctl(ctx, deployer, "", "lease", "grant", "600")
		var hexID string
		if _, serr := fmt.Sscanf(out, "lease %s granted", &hexID); err != nil || serr != nil {
			t.Fatalf("deployer etcdctl lease grant = %q, %v (stderr %q)", out, err, stderr)
		}
		for _, key := range []string{"/e2e/bulk/120", "/e2e/bulk/119"} {
			out, stderr, err = px.etcdctl(ctx, deployer, "", "put", "--lease="+hexID, key, "x")
			if err == nil || !strings.Contains(stderr, "change budget delete:etcd exhausted") {
				t.Errorf("deployer etcdctl put --lease %s on an existing key = %q, %v (stderr %q), want the delete budget exhausted", key, out, err, stderr)
			}
		}
		// A new key may take the lease: it removes nothing that existed.
		if out, stderr, err := px.etcdctl(ctx, deployer, "", "put", "--lease="+hexID, "/e2e/fresh", "x"); err != nil || out != "OK\n" {
			t.Errorf("deployer etcdctl put --lease on a new key = %q, %v (stderr %q), want OK", out, err, stderr)
		}
		// …but revoking the lease removes that key: it costs a unit the deployer no longer has.
		out, stderr, err = px.etcdctl(ctx, deployer, "", "lease", "revoke", hexID)
		if err == nil || !strings.Contains(stderr, "change budget delete:etcd exhausted") {
			t.Errorf("deployer etcdctl lease revoke = %q, %v (stderr %q), want the delete budget exhausted", out, err, stderr)
		}
		if after := keyCount(ctx, t, etcd); after != before+1 {
			t.Errorf("etcd holds %d keys after the refused lease trick, want %d (%d and /e2e/fresh)", after, before+1, before)
		}
	})

	if err := px.Stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ztp-proxy after SIGTERM: %v\nstderr:\n%s", err, px.Stderr.String())
	}

	t.Run("audit log and replay", func(t *testing.T) {
		checkEffectAudit(ctx, t, px.auditPath, total)
	})
}

// checkEffectAudit checks that every decision that asked etcd recorded its queries with
// answer digests, that the forbidden wipes record the count etcd gave, and that replaying
// the log under the same policy with the recorded answers changes nothing.
func checkEffectAudit(ctx context.Context, t *testing.T, path string, total int) {
	if res, err := audit.VerifyFile(ctx, path); err != nil || !res.OK() {
		t.Errorf("audit.VerifyFile = %+v, %v, want an intact chain", res, err)
	}
	e, err := policy.Load(ctx, policy.Options{Paths: []string{policyDir}})
	if err != nil {
		t.Fatal(err)
	}
	rp := policy.NewReplayer(e, policy.ReplayOptions{})
	wipes, withQueries := 0, 0
	err = audit.ScanFile(ctx, path, 1, func(r *audit.Record) error {
		if r.Type == audit.TypeRequest && r.Decision == audit.DecisionError {
			t.Errorf("record %d: decision error %v", r.Seq, r.Reasons)
		}
		if len(r.Queries) > 0 && r.Decision != audit.DecisionRatelimited {
			withQueries++
		}
		for _, q := range r.Queries {
			if len(q.AnswerSHA256) != 64 || len(q.Answer) == 0 || q.Error != "" {
				t.Errorf("record %d: query %+v, want an answer with its digest", r.Seq, q)
			}
		}
		if len(r.Reasons) == 1 && r.Reasons[0] == fmt.Sprintf("the call would remove %d keys; at most %d may go in one call", total, maxPerDel) {
			wipes++
			if len(r.Queries) != 1 || r.Queries[0].Method != "/etcdserverpb.KV/Range" || !strings.Contains(string(r.Queries[0].Answer), `"count":"`+strconv.Itoa(total)+`"`) {
				t.Errorf("record %d (a forbidden wipe): queries %+v, want one count-only Range answered %d", r.Seq, r.Queries, total)
			}
		}
		return rp.Add(ctx, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if wipes != 4 {
		t.Errorf("%d records of forbidden wipes under break-glass, want 4", wipes)
	}
	rep := rp.Report()
	b, _ := json.Marshal(rep)
	if rep.AllowToDeny.Count+rep.DenyToAllow.Count != 0 || rep.EvalErrors != 0 || rep.Skipped[policy.SkipQueryNotRecorded] != 0 || rep.Replayed < withQueries {
		t.Errorf("replay under the same policy with the recorded answers = %s, want every record replayed, none changed", b)
	}
	t.Logf("replay: %s", b)
}

// grant has requester ask for a break-glass grant with the scopes and approver approve it.
func grant(ctx context.Context, t *testing.T, ctl string, px *proxyProc, requester, approver client, scopes ...string) string {
	t.Helper()
	args := []string{"breakglass", "request", "--reason", "e2e: effect queries under break-glass", "--ticket", "INC-1", "--duration", "10m"}
	for _, s := range scopes {
		args = append(args, "--scope", s)
	}
	out, stderr, err := px.ztpctl(ctx, ctl, requester, args...)
	if err != nil {
		t.Fatalf("ztpctl breakglass request = %q, %v (stderr %q)", out, err, stderr)
	}
	id := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if out, stderr, err := px.ztpctl(ctx, ctl, approver, "breakglass", "approve", id, "--comment", "e2e"); err != nil {
		t.Fatalf("ztpctl breakglass approve %s = %q, %v (stderr %q)", id, out, err, stderr)
	}
	return id
}

// etcdDirect runs etcdctl against etcd itself, past the proxy: test setup and checks only.
func etcdDirect(ctx context.Context, e *etcdProc, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "etcdctl", append([]string{"--endpoints=" + e.addr}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// keyCount asks etcd directly how many keys it holds.
func keyCount(ctx context.Context, t *testing.T, e *etcdProc) int {
	t.Helper()
	out, err := etcdDirect(ctx, e, "", "get", "", "--from-key", "--keys-only", "-w", "json")
	if err != nil {
		t.Fatalf("etcdctl get --from-key -w json (direct) = %q, %v", out, err)
	}
	var resp struct{ Count int }
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("etcdctl get -w json = %q: %v", out, err)
	}
	return resp.Count
}
