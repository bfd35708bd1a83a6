package etcd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

// ztpctl runs the real ztpctl against the proxy as c.
func (px *proxyProc) ztpctl(ctx context.Context, bin string, c client, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	full := append([]string{"--server", px.addr, "--cacert", filepath.Join(px.dir, "certs", "ca.pem"), "--cert", c.cert, "--key", c.key}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// TestEtcdBreakglassOnePerson: with the example config as shipped, bob's everyday
// certificate (/user/bob) and his approver certificate (/lead/bob) are one person, so he
// cannot approve with one what he requested with the other; his defrag stays refused and
// never reaches etcd. Another lead's approval does open it. Real etcd, etcdctl, ztpctl
// and ztp-proxy binaries.
func TestEtcdBreakglassOnePerson(t *testing.T) {
	requireEtcd(t)
	ctx := testCtx(t, 3*time.Minute)
	ctl := buildCtl(t)
	etcd, px := startExample(ctx, t)
	dir := px.dir
	bobUser, bobLead, carol := px.client("bob-user", bobUserID), px.client("bob", bobLeadID), px.client("carol", carolID)

	defrag := func(what string, wantOK bool) {
		t.Helper()
		base := etcd.started(ctx, t, "etcdserverpb.Maintenance", "Defragment")
		_, stderr, err := px.etcdctl(ctx, bobUser, "", "defrag")
		reached := etcd.started(ctx, t, "etcdserverpb.Maintenance", "Defragment") - base
		switch {
		case wantOK && (err != nil || reached != 1):
			t.Fatalf("%s: bob's defrag = %v, %s; reached etcd %d times; want it served", what, err, stderr, reached)
		case !wantOK && (err == nil || !strings.Contains(stderr, "PermissionDenied") || reached != 0):
			t.Fatalf("%s: bob's defrag = %v, %q; reached etcd %d times; want PermissionDenied, never forwarded", what, err, stderr, reached)
		}
	}
	defrag("before any grant", false)

	out, stderr, err := px.ztpctl(ctx, ctl, bobUser, "breakglass", "request", "--reason", "INC-7 db fragmented, disk at 95%",
		"--ticket", "INC-7", "--duration", "10m", "--scope", "/etcdserverpb.Maintenance/Defragment")
	if err != nil {
		t.Fatalf("bob (user cert) breakglass request: %v\n%s", err, stderr)
	}
	id := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	if !strings.HasPrefix(id, "bg-") {
		t.Fatalf("breakglass request printed %q, want the grant id first", out)
	}

	// The same person under his other identity: refused, and the grant stays pending.
	_, stderr, err = px.ztpctl(ctx, ctl, bobLead, "breakglass", "approve", id)
	if err == nil || !strings.Contains(stderr, "PermissionDenied") || !strings.Contains(stderr, "self-approval refused") {
		t.Fatalf("bob (lead cert) approving his own request = %v, %q; want PermissionDenied self-approval refused", err, stderr)
	}
	defrag("after bob approved his own request", false)

	// Another person in sre-leads: the grant opens.
	if _, stderr, err := px.ztpctl(ctx, ctl, carol, "breakglass", "approve", id); err != nil {
		t.Fatalf("carol approving bob's request: %v\n%s", err, stderr)
	}
	defrag("after carol approved", true)

	if err := px.Stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ztp-proxy after SIGTERM: %v", err)
	}
	var approvals []string
	err = audit.ScanFile(ctx, px.auditPath, 1, func(r *audit.Record) error {
		if r.Type == audit.TypeBreakglass && r.BreakglassGrant == id && r.Principal != nil {
			approvals = append(approvals, r.Principal.ID+": "+r.Detail)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("grant %s in the audit log:\n  %s", id, strings.Join(approvals, "\n  "))
	for _, a := range approvals {
		if strings.HasPrefix(a, bobLeadID) && strings.Contains(a, "approved") {
			t.Errorf("the audit log records an approval by bob's lead identity: %s", a)
		}
	}

	// The example ships its checkpoints by itself: the newest, signed at stop, covers
	// the whole log and verifies with the public key quickstart hands to auditors.
	ckpts, err := filepath.Glob(filepath.Join(dir, "checkpoints", "checkpoint-*.txt"))
	if err != nil || len(ckpts) == 0 {
		t.Fatalf("no checkpoint in %s/checkpoints (%v)", dir, err)
	}
	signed, err := os.ReadFile(ckpts[len(ckpts)-1])
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "certs", "audit-ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint(signed, pub)
	if err != nil {
		t.Fatalf("%s: %v", ckpts[len(ckpts)-1], err)
	}
	r, err := audit.OpenReader(px.auditPath, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.VerifyExtends(ctx, cp)
	if err != nil || res.Records != cp.Size {
		t.Errorf("log against the checkpoint shipped at stop: %+v, %v; want it to extend it and hold exactly its %d records", res, err, cp.Size)
	}
}
