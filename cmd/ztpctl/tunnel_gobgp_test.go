package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestTunnelGoBGP drives the real gobgpd with the stock gobgp CLI, which can
// neither present a client certificate nor send a token, through ztpctl
// tunnel and the proxy: the proxy routes gobgp's API (without descriptors;
// the policy here only looks at the principal and method), and the audit log
// names the tunnel user.
func TestTunnelGoBGP(t *testing.T) {
	for _, tool := range []string{"gobgpd", "gobgp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not in PATH (Debian: apt-get install -y gobgpd)", tool)
		}
	}
	if testing.Short() {
		t.Skip("runs gobgpd")
	}
	ctx := proxytest.Ctx(t)
	api := freeAddr(t)
	conf := filepath.Join(t.TempDir(), "gobgpd.toml")
	// port = -1: no BGP listener, only the API.
	if err := os.WriteFile(conf, []byte("[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n  port = -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var gobgpdLog proxytest.SyncBuffer
	gobgpd := exec.Command("gobgpd", "-f", conf, "--api-hosts", api, "--pprof-disable", "-p", "-l", "info")
	gobgpd.Stdout, gobgpd.Stderr = &gobgpdLog, &gobgpdLog
	if err := gobgpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		gobgpd.Process.Kill()
		gobgpd.Wait()
		if t.Failed() {
			t.Logf("gobgpd log:\n%s", gobgpdLog.String())
		}
	})
	for {
		if c, err := net.DialTimeout("tcp", api, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gobgpd did not listen on %s", api)
		case <-time.After(20 * time.Millisecond):
		}
	}

	env := proxytest.Prepare(t, proxytest.Options{
		Upstream:      api,
		NoDescriptors: true,
		Policy: `package ztp

default allow := false

allow if {
	input.principal.kind == "automation"
	input.method in {"/apipb.GobgpApi/GetBgp", "/apipb.GobgpApi/AddPath", "/apipb.GobgpApi/ListPath"}
}
`,
	})
	env.RewriteConfig(t, func(y string) string {
		return strings.Replace(y, `services: ["grpc.testing.*"]`, `services: ["apipb.*"]`, 1)
	})
	env.Restart(t)
	t.Cleanup(func() { env.Stop(t) })
	cert, key := env.ClientFiles(t, proxytest.DeployerID)
	tunnel, _ := serveTunnel(t, env, "--cert", cert, "--key", key)
	host, port, _ := net.SplitHostPort(tunnel)

	gobgp := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "gobgp", append([]string{"-u", host, "-p", port}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := gobgp("global"); err != nil || !strings.Contains(out, "AS:        65001") {
		t.Fatalf("gobgp global through the tunnel = %q, %v", out, err)
	}
	if out, err := gobgp("global", "rib", "add", "10.1.0.0/24", "-a", "ipv4"); err != nil {
		t.Fatalf("gobgp global rib add through the tunnel = %q, %v", out, err)
	}
	if out, err := gobgp("global", "rib", "-a", "ipv4"); err != nil || !strings.Contains(out, "10.1.0.0/24") {
		t.Fatalf("gobgp global rib through the tunnel = %q, %v; want the added prefix", out, err)
	}
	// What the policy does not allow is refused with the proxy's reason.
	out, err := gobgp("global", "rib", "del", "10.1.0.0/24", "-a", "ipv4")
	if err == nil || !strings.Contains(out, "PermissionDenied") && !strings.Contains(out, "not allowed") {
		t.Errorf("gobgp global rib del through the tunnel = %q, %v; want the proxy's refusal", out, err)
	}

	recs := env.Requests(t, "/apipb.GobgpApi/AddPath")
	if len(recs) != 1 || recs[0].Principal.ID != proxytest.DeployerID || recs[0].Decision != "allow" {
		t.Errorf("audit records for AddPath = %+v, want one allow by the tunnel user %s", recs, proxytest.DeployerID)
	}
}

// freeAddr is a loopback address that was free a moment ago (gobgpd cannot be
// handed a listener).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr())
}
