package etcd_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEtcdThroughTunnel drives the real etcd with a stock etcdctl that has no
// credentials at all, plaintext to a `ztpctl tunnel` that carries deployer's
// certificate to the real ztp-proxy: puts, gets, a watch and a lease
// keep-alive work, the policy's refusals come back to etcdctl, and every call
// is audited under deployer's principal.
func TestEtcdThroughTunnel(t *testing.T) {
	requireEtcd(t)
	ctx := testCtx(t, 3*time.Minute)
	bin := buildProxy(t)
	ctl := filepath.Join(t.TempDir(), "ztpctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "github.com/ztp-dev/ztp/cmd/ztpctl").CombinedOutput(); err != nil {
		t.Fatalf("go build ztpctl: %v\n%s", err, out)
	}

	ports := freePorts(t, 5)
	etcd := startEtcd(ctx, t, ports[0], ports[1], ports[2])
	dir := t.TempDir()
	mintCerts(t, dir)
	px := startProxy(ctx, t, bin, dir, fmt.Sprintf("127.0.0.1:%d", ports[3]), etcd.addr)
	deployer := px.client("deployer", deployerID)

	tunAddr := fmt.Sprintf("127.0.0.1:%d", ports[4])
	tunCmd := exec.Command(ctl, "tunnel", "--listen", tunAddr, "--server", px.addr,
		"--cacert", filepath.Join(dir, "certs", "ca.pem"), "--cert", deployer.cert, "--key", deployer.key)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZTP_") {
			tunCmd.Env = append(tunCmd.Env, kv)
		}
	}
	tun := startProc(t, "ztpctl tunnel", tunCmd)
	waitFor(ctx, t, 15*time.Second, "ztpctl tunnel to listen on "+tunAddr, func() bool {
		if tun.exited() {
			t.Fatalf("ztpctl tunnel exited: %v\nstderr:\n%s", tun.err, tun.stderr.String())
		}
		c, err := net.DialTimeout("tcp", tunAddr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})

	// etcdctl as a user without credentials runs it: no --cacert, --cert or --key.
	etcdctlCmd := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "etcdctl", append([]string{"--endpoints=" + tunAddr, "--dial-timeout=5s", "--command-timeout=10s"}, args...)...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "ETCDCTL_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		cmd.Env = append(cmd.Env, "ETCDCTL_API=3")
		return cmd
	}
	run := func(args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := etcdctlCmd(ctx, args...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	var wants []auditWant

	watchBase := etcd.started(ctx, t, "etcdserverpb.Watch", "Watch")
	watch := startProc(t, "etcdctl watch", etcdctlCmd(ctx, "watch", "/tunnel/watched"))
	waitFor(ctx, t, 15*time.Second, "the watch to reach etcd through the tunnel", func() bool {
		return etcd.started(ctx, t, "etcdserverpb.Watch", "Watch") == watchBase+1
	})
	wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.Watch/Watch", fields: map[string]string{"createRequest.key": b64("/tunnel/watched")}})

	for _, s := range []struct {
		args []string
		want string
		w    auditWant
	}{
		{[]string{"put", "/tunnel/k", "v1"}, "OK\n", auditWant{method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/tunnel/k"), "value": b64("v1")}}},
		{[]string{"get", "/tunnel/k"}, "/tunnel/k\nv1\n", auditWant{method: "/etcdserverpb.KV/Range", fields: map[string]string{"key": b64("/tunnel/k")}}},
		{[]string{"put", "/tunnel/watched", "event-1"}, "OK\n", auditWant{method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/tunnel/watched"), "value": b64("event-1")}}},
	} {
		out, stderr, err := run(s.args...)
		if err != nil || out != s.want {
			t.Fatalf("etcdctl %q through the tunnel = %q, %v (stderr %q), want %q", s.args, out, err, stderr, s.want)
		}
		s.w.who = deployer
		wants = append(wants, s.w)
	}
	waitFor(ctx, t, 15*time.Second, "the watch to print the event", func() bool {
		return slices.Contains(lines(watch.stdout.String()), "event-1")
	})

	// A lease and its keep-alive stream: etcdctl prints one line per renewal.
	out, stderr, err := run("lease", "grant", "6")
	m := regexp.MustCompile(`lease ([0-9a-f]+) granted with TTL\(6s\)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("etcdctl lease grant = %q, %v (stderr %q)", out, err, stderr)
	}
	wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.Lease/LeaseGrant"})
	keep := startProc(t, "etcdctl lease keep-alive", etcdctlCmd(ctx, "lease", "keep-alive", m[1]))
	waitFor(ctx, t, 30*time.Second, "two keep-alive renewals through the tunnel", func() bool {
		return strings.Count(keep.stdout.String(), "keepalived with TTL(6)") >= 2
	})
	wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.Lease/LeaseKeepAlive", minMessages: 2})

	// The proxy's refusal reaches etcdctl with its reason, and etcd never sees the call.
	before := etcd.started(ctx, t, "etcdserverpb.Maintenance", "Defragment")
	_, stderr, err = run("defrag")
	if err == nil || !strings.Contains(stderr, "needs break-glass") {
		t.Errorf("etcdctl defrag through the tunnel = %v, stderr %q; want the proxy's refusal", err, stderr)
	}
	if after := etcd.started(ctx, t, "etcdserverpb.Maintenance", "Defragment"); after != before {
		t.Errorf("etcd's Defragment count went %d -> %d: the refused call reached etcd", before, after)
	}
	wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.Maintenance/Defragment", decision: "deny", reasons: []string{"/etcdserverpb.Maintenance/Defragment needs break-glass"}})

	keep.stop(t, syscall.SIGTERM, 5*time.Second)
	watch.stop(t, syscall.SIGTERM, 5*time.Second)
	if err := tun.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("ztpctl tunnel after SIGTERM: %v, want exit status 0\nstderr:\n%s", err, tun.stderr.String())
	}
	if log := tun.stderr.String(); !strings.Contains(log, "method=/etcdserverpb.KV/Put code=OK") || !strings.Contains(log, "method=/etcdserverpb.Maintenance/Defragment code=PermissionDenied") {
		t.Errorf("the tunnel's log does not show the calls:\n%s", log)
	}
	if err := px.stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ztp-proxy after SIGTERM: %v\nstderr:\n%s", err, px.stderr.String())
	}
	checkAudit(ctx, t, px.auditPath, wants)

	// The start-up line names the build (go build stamps the VCS revision).
	for _, l := range lines(px.stderr.String()) {
		if strings.Contains(l, "msg=serving") && !(strings.Contains(l, "version=") && strings.Contains(l, "revision ")) {
			t.Errorf("ztp-proxy's start-up line does not name its version and revision: %s", l)
		}
	}
	if !strings.Contains(px.stderr.String(), "msg=serving") {
		t.Errorf("no start-up line in ztp-proxy's log:\n%s", px.stderr.String())
	}
}
