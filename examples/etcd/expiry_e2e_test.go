package etcd_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/exampletest"
	"github.com/ztp-dev/ztp/pki"
)

// certLifetime is how long the watcher's certificate lives. Real time is
// unavoidable here (etcdctl is another process with its own clock): a few
// seconds, enough for etcdctl to connect and see one event on a loaded
// machine, and the test's only wait.
const certLifetime = 6 * time.Second

// TestEtcdWatchEndsAtCertExpiry: an etcdctl watch opened with a client
// certificate that expires a few seconds later stops at the expiry. The proxy
// cuts the stream with UNAUTHENTICATED (the watch was idle: nothing from the
// client triggers it), etcd's watch is cancelled, a key put afterwards by
// another, valid client is never printed by the watcher, and the end is in
// the audit log. etcdctl (clientv3) treats UNAUTHENTICATED as final and exits;
// a new connection with the same certificate fails the TLS handshake.
func TestEtcdWatchEndsAtCertExpiry(t *testing.T) {
	requireEtcd(t)
	ctx := testCtx(t, 3*time.Minute)
	etcd, px := startExample(ctx, t)
	dir := px.dir
	deployer := px.client("deployer", deployerID)

	// X.509 times have whole seconds: NotAfter is rounded up, so the
	// certificate lives at least certLifetime.
	notAfter := time.Now().Add(certLifetime).Truncate(time.Second).Add(time.Second)
	ca, err := pki.LoadCA(filepath.Join(dir, "certs", "ca.pem"), filepath.Join(dir, "certs", "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: "alice", URIs: []string{aliceID}, Client: true, NotBefore: time.Now().Add(-time.Minute), NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(filepath.Join(dir, "certs"), "alice-short", leaf); err != nil {
		t.Fatal(err)
	}
	short := px.client("alice-short", aliceID)

	watchBase := etcd.started(ctx, t, "etcdserverpb.Watch", "Watch")
	watch := px.start(ctx, t, short, "watch", "/e2e/expiring")
	exampletest.WaitFor(ctx, t, certLifetime, "the watch to reach etcd", func() bool {
		return etcd.started(ctx, t, "etcdserverpb.Watch", "Watch") == watchBase+1
	})
	put := func(v string) {
		t.Helper()
		if out, stderr, err := px.etcdctl(ctx, deployer, "", "put", "/e2e/expiring", v); err != nil || out != "OK\n" {
			t.Fatalf("deployer etcdctl put /e2e/expiring %s = %q, %v (stderr %q)", v, out, err, stderr)
		}
	}
	put("before-expiry")
	exampletest.WaitFor(ctx, t, certLifetime, "the watch to print the event before the expiry", func() bool {
		return slices.Contains(lines(watch.Stdout.String()), "before-expiry")
	})
	if time.Now().After(notAfter) {
		t.Fatalf("the setup took longer than the certificate's %v lifetime; the test proves nothing", certLifetime)
	}
	cancelledBase := etcd.handled(ctx, t, "Watch", "Canceled")

	// The watch is idle from here on: the proxy ends it on its own.
	exampletest.WaitFor(ctx, t, time.Until(notAfter)+15*time.Second, "etcdctl watch to be cut and exit", watch.Exited)
	if end := time.Now(); end.Before(notAfter) {
		t.Fatalf("the watch ended at %v, before the certificate's NotAfter %v: %v\nstderr: %s", end, notAfter, watch.Err, watch.Stderr.String())
	}
	exampletest.WaitFor(ctx, t, 10*time.Second, "etcd to see the watch cancelled", func() bool {
		return etcd.handled(ctx, t, "Watch", "Canceled") == cancelledBase+1
	})
	put("after-expiry")
	if watch.Err == nil {
		t.Errorf("etcdctl watch exited with status 0, want an error")
	}
	want := "credentials expired at " + notAfter.UTC().Format(time.RFC3339)
	if stderr := watch.Stderr.String(); !strings.Contains(stderr, "Unauthenticated") || !strings.Contains(stderr, want) {
		t.Errorf("etcdctl watch stderr = %q, want the proxy's UNAUTHENTICATED %q", stderr, want)
	}
	if got := lines(watch.Stdout.String()); slices.Contains(got, "after-expiry") {
		t.Errorf("the watcher printed a key put after its certificate expired:\n%s", strings.Join(got, "\n"))
	}
	t.Logf("etcdctl watch after the expiry: %v; stderr: %s", watch.Err, strings.TrimSpace(watch.Stderr.String()))

	// A new connection with the expired certificate: the TLS handshake refuses it.
	_, stderr, err := px.etcdctl(ctx, short, "", "--command-timeout=3s", "get", "/e2e/expiring")
	if err == nil {
		t.Errorf("etcdctl get with the expired certificate succeeded")
	}
	t.Logf("etcdctl get with the expired certificate: %v; stderr: %s", err, exampletest.Tail(stderr, 3))

	if err := px.Stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ztp-proxy after SIGTERM: %v\nstderr:\n%s", err, px.Stderr.String())
	}
	r, err := audit.OpenReader(px.auditPath, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var outcome *audit.Record
	err = r.Scan(ctx, 1, func(rec *audit.Record) error {
		if rec.Type == "outcome" && rec.Method == "/etcdserverpb.Watch/Watch" && rec.Principal != nil && rec.Principal.ID == aliceID {
			outcome = rec
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if outcome == nil || outcome.Code != "UNAUTHENTICATED" || !strings.Contains(outcome.Detail, want) {
		t.Errorf("outcome record of the watch = %+v, want code UNAUTHENTICATED and detail %q", outcome, want)
	}
}

// handled returns etcd's grpc_server_handled_total for a method of
// etcdserverpb.Watch ended with code (0 when etcd has not counted any yet).
func (e *etcdProc) handled(ctx context.Context, t *testing.T, method, code string) int64 {
	t.Helper()
	body, err := httpGet(ctx, e.metrics)
	if err != nil {
		t.Fatalf("etcd metrics: %v", err)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "grpc_server_handled_total{") && strings.Contains(line, `grpc_code="`+code+`"`) &&
			strings.Contains(line, `grpc_method="`+method+`"`) && strings.Contains(line, `grpc_service="etcdserverpb.Watch"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("etcd metrics line %q: %v", line, err)
			}
			return int64(v)
		}
	}
	return 0
}
