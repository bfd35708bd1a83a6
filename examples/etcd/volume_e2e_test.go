package etcd_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

// TestEtcdResponseVolume: a response_bytes rule on humans' Range, added to the
// example's config, lets alice's small gets through and cuts her bulk reads
// with the stock etcdctl: a whole-prefix get (one Range response larger than
// the rule's burst) is never sent; two partial reads take the bucket into debt,
// and her next get is refused before it reaches etcd. The deployer (no such
// rule) reads everything. The audit log has the volume and the rule.
func TestEtcdResponseVolume(t *testing.T) {
	requireEtcd(t)
	ctx := testCtx(t, 3*time.Minute)
	const burst = 20000
	var rule string
	etcd, px := startExample(ctx, t, func(doc map[string]any) {
		rules, _ := doc["rate_limits"].([]any)
		rule = fmt.Sprintf("rate_limits[%d]", len(rules))
		doc["rate_limits"] = append(rules, map[string]any{
			"match": map[string]any{"kind": "human", "method": "/etcdserverpb.KV/Range"},
			"unit":  "response_bytes", "rps": 100, "burst": burst,
		})
	})
	deployer := px.client("deployer", deployerID)
	alice := px.client("alice", aliceID)

	// 20 keys of 2000 bytes: 40 kB in one Range response, twice the burst.
	value := strings.Repeat("v", 2000)
	for i := range 20 {
		if out, stderr, err := px.etcdctl(ctx, deployer, "", "put", fmt.Sprintf("/e2e/bulk/%02d", i), value); err != nil || out != "OK\n" {
			t.Fatalf("deployer put %d = %q, %v (stderr %q)", i, out, err, stderr)
		}
	}
	get := func(c client, args ...string) (string, string, error) {
		return px.etcdctl(ctx, c, "", append([]string{"get", "--keys-only=false"}, args...)...)
	}

	if out, stderr, err := get(alice, "/e2e/bulk/00"); err != nil || !strings.Contains(out, value) {
		t.Fatalf("alice's small get = %v (stderr %q)", err, stderr)
	}
	_, stderr, err := get(alice, "--prefix", "/e2e/bulk/")
	if err == nil || !strings.Contains(stderr, "ResourceExhausted") ||
		!strings.Contains(stderr, "response volume limit "+rule+" for "+aliceID) || !strings.Contains(stderr, fmt.Sprintf("exceeds its burst of %d", burst)) {
		t.Fatalf("alice's whole-prefix get = %v, stderr %q; want RESOURCE_EXHAUSTED naming %s and the burst", err, stderr, rule)
	}
	// Two reads of 5 keys (about 10 kB each) fit one at a time: the second
	// finds the bucket not yet empty and takes it below zero.
	for i := range 2 {
		if out, stderr, err := get(alice, "--prefix", "--limit", "5", "/e2e/bulk/"); err != nil || strings.Count(out, value) != 5 {
			t.Fatalf("alice's 5-key read %d = %v (stderr %q)", i+1, err, stderr)
		}
	}
	rangeBase := etcd.started(ctx, t, "etcdserverpb.KV", "Range")
	_, stderr, err = get(alice, "/e2e/bulk/00")
	if err == nil || !strings.Contains(stderr, "ResourceExhausted") || !strings.Contains(stderr, rule+" for "+aliceID+" (response_bytes); retry in") {
		t.Fatalf("alice's get with the bucket in debt = %v, stderr %q; want refused until the refill", err, stderr)
	}
	if n := etcd.started(ctx, t, "etcdserverpb.KV", "Range"); n != rangeBase {
		t.Errorf("the refused get reached etcd (%d Range calls, want %d)", n, rangeBase)
	}
	if out, stderr, err := get(deployer, "--prefix", "/e2e/bulk/"); err != nil || strings.Count(out, value) != 20 {
		t.Fatalf("deployer's whole-prefix get = %v (stderr %q), %d values", err, stderr, strings.Count(out, value))
	}

	if err := px.Stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ztp-proxy after SIGTERM: %v\nstderr:\n%s", err, px.Stderr.String())
	}
	var outcomes, refused []*audit.Record
	err = audit.ScanFile(ctx, px.auditPath, 1, func(r *audit.Record) error {
		if r.Method == "/etcdserverpb.KV/Range" && principalID(r) == aliceID {
			switch {
			case r.Type == audit.TypeOutcome:
				outcomes = append(outcomes, r)
			case r.Decision == audit.DecisionRatelimited:
				refused = append(refused, r)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// small get, whole-prefix get, two 5-key reads, the refused get
	if len(outcomes) != 5 {
		t.Fatalf("%d outcome records of alice's Range calls, want 5", len(outcomes))
	}
	small, bulk, part := outcomes[0], outcomes[1], outcomes[2]
	if small.Code != "OK" || small.MessagesOut != 1 || small.BytesOut < 2000 || small.BytesIn == 0 {
		t.Errorf("small get's outcome: code %s messages_out %d bytes_in %d bytes_out %d", small.Code, small.MessagesOut, small.BytesIn, small.BytesOut)
	}
	if bulk.Code != "RESOURCE_EXHAUSTED" || bulk.MessagesOut != 0 || bulk.BytesOut != 0 || !strings.Contains(bulk.Detail, rule) {
		t.Errorf("whole-prefix get's outcome: code %s messages_out %d bytes_out %d detail %q", bulk.Code, bulk.MessagesOut, bulk.BytesOut, bulk.Detail)
	}
	if part.Code != "OK" || part.BytesOut < 5*2000 {
		t.Errorf("5-key read's outcome: code %s bytes_out %d", part.Code, part.BytesOut)
	}
	if len(refused) != 1 || !strings.Contains(refused[0].Reasons[0], "(response_bytes)") {
		t.Errorf("ratelimited records of alice's Range = %d, want 1 naming the response_bytes rule", len(refused))
	}
}
