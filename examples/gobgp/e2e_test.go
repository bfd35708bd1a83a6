package gobgp_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/exampletest"
	"github.com/ztp-dev/ztp/pki"
)

func TestMain(m *testing.M) {
	code := m.Run()
	exampletest.RemoveBuilds()
	os.Exit(code)
}

// buildBins builds ztp-proxy and ztpctl from this tree, once per test binary.
func buildBins(t *testing.T) (proxyBin, ztpctlBin string) {
	t.Helper()
	return exampletest.Build(t, "github.com/ztp-dev/ztp/cmd/ztp-proxy"), exampletest.Build(t, "github.com/ztp-dev/ztp/cmd/ztpctl")
}

// requireGoBGP skips the test when gobgpd or gobgp is missing, or fails it when CI said
// it must run (ZTP_REQUIRE_GOBGP=1).
func requireGoBGP(t *testing.T) {
	t.Helper()
	exampletest.Require(t, "ZTP_REQUIRE_GOBGP", "apt-get install -y gobgpd", "gobgpd", "gobgp")
}

// TestGoBGPEndToEnd drives a real gobgpd with the stock gobgp CLI — which can present
// neither a certificate nor a token — through `ztpctl tunnel` and the real ztp-proxy
// binary, configured with the committed ztp.yaml, policies and protoset. What reached
// gobgpd is judged by gobgpd itself (gobgp called directly on its API port), and the
// audit log the proxy leaves behind is read at the end.
func TestGoBGPEndToEnd(t *testing.T) {
	requireGoBGP(t)
	ctx := testCtx(t, 3*time.Minute)
	proxyBin, ctl := buildBins(t)
	ports := freePorts(t, 4)
	apiAddr, proxyAddr, injectorTun, aliceTun := ports[0], ports[1], ports[2], ports[3]

	gobgpd := startGoBGPd(ctx, t, apiAddr)
	dir := t.TempDir()
	mintCerts(t, dir)
	px := startProxy(ctx, t, proxyBin, dir, proxyAddr, apiAddr)
	cred := func(name string) []string {
		return []string{"--server", proxyAddr, "--cacert", filepath.Join(dir, "certs", "ca.pem"),
			"--cert", filepath.Join(dir, "certs", name+".pem"), "--key", filepath.Join(dir, "certs", name+"-key.pem")}
	}
	startTunnel(ctx, t, ctl, injectorTun, cred("injector"))
	startTunnel(ctx, t, ctl, aliceTun, cred("alice"))
	injector := func(args ...string) (string, error) { return gobgp(ctx, injectorTun, args...) }
	alice := func(args ...string) (string, error) { return gobgp(ctx, aliceTun, args...) }
	rib := func() string {
		out, err := gobgp(ctx, gobgpd, "global", "rib", "-a", "ipv4")
		if err != nil {
			t.Fatalf("gobgp global rib (direct) = %q, %v", out, err)
		}
		return out
	}
	var wants []auditWant

	t.Run("allowed", func(t *testing.T) {
		for _, p := range []string{"10.100.1.0/24", "10.100.10.0/24", "10.100.11.0/24", "10.100.12.0/24", "10.100.13.0/24", "10.100.14.0/24", "10.100.15.0/24"} {
			if out, err := injector("global", "rib", "add", p, "-a", "ipv4"); err != nil {
				t.Fatalf("injector gobgp global rib add %s = %q, %v", p, out, err)
			}
			prefix, _, _ := strings.Cut(p, "/")
			wants = append(wants, auditWant{who: injectorID, method: "AddPath", prefix: prefix, decision: audit.DecisionAllow})
		}
		if r := rib(); !strings.Contains(r, "10.100.1.0/24") {
			t.Errorf("gobgpd's RIB after the injector's add:\n%s\nwant 10.100.1.0/24", r)
		}
		// Everybody reads, through the tunnel: the stock CLI's own commands.
		if out, err := alice("global", "rib", "-a", "ipv4"); err != nil || !strings.Contains(out, "10.100.1.0/24") {
			t.Errorf("alice gobgp global rib = %q, %v; want the injected prefix", out, err)
		}
		if out, err := alice("global"); err != nil || !strings.Contains(out, "64512") {
			t.Errorf("alice gobgp global = %q, %v; want AS 64512", out, err)
		}
		wants = append(wants, auditWant{who: aliceID, method: "ListPath", decision: audit.DecisionAllow}, auditWant{who: aliceID, method: "GetBgp", decision: audit.DecisionAllow})
	})

	refused := func(t *testing.T, who string, run func(...string) (string, error), args []string, code, reason string) {
		t.Helper()
		out, err := run(args...)
		if err == nil || !strings.Contains(out, code) || !strings.Contains(out, reason) {
			t.Errorf("%s gobgp %s = %q, %v; want a %s naming %q", who, strings.Join(args, " "), out, err, code, reason)
		}
	}
	const outside = `route 10.200.1.0/24 is outside the allow-list {"10.100.0.0/16", "2001:db8:100::/48"}`
	t.Run("denied", func(t *testing.T) {
		refused(t, "injector", injector, []string{"global", "rib", "add", "10.200.1.0/24", "-a", "ipv4"}, "PermissionDenied", outside)
		refused(t, "alice", alice, []string{"global", "rib", "add", "10.100.2.0/24", "-a", "ipv4"}, "PermissionDenied", "human changes need break-glass")
		refused(t, "alice", alice, []string{"neighbor", "add", "127.0.0.2", "as", "65002"}, "PermissionDenied", "/apipb.GobgpApi/AddPeer needs break-glass")
		refused(t, "injector", injector, []string{"global", "rib", "del", "all", "-a", "ipv4"}, "PermissionDenied", "withdrawing every route (DeletePath without a path) needs break-glass")
		if r := rib(); strings.Contains(r, "10.200.1.0/24") || strings.Contains(r, "10.100.2.0/24") {
			t.Errorf("gobgpd's RIB after the refused adds:\n%s", r)
		}
		wants = append(wants,
			auditWant{who: injectorID, method: "AddPath", prefix: "10.200.1.0", decision: audit.DecisionDeny, reasons: []string{outside}},
			auditWant{who: aliceID, method: "AddPath", prefix: "10.100.2.0", decision: audit.DecisionDeny, reasons: []string{"human changes need break-glass"}},
			auditWant{who: aliceID, method: "AddPeer", decision: audit.DecisionDeny, reasons: []string{"/apipb.GobgpApi/AddPeer needs break-glass", "human changes need break-glass"}},
		)
	})

	const defaultRoute = "announcing a default route (prefix length 0) is forbidden"
	t.Run("forbidden", func(t *testing.T) {
		// The CLI sends no prefixLen for /0: the zero value the proxy renders makes the
		// policy's plain `prefixLen == 0` fire.
		refused(t, "injector", injector, []string{"global", "rib", "add", "0.0.0.0/0", "-a", "ipv4"}, "PermissionDenied", defaultRoute)
		refused(t, "injector", injector, []string{"global", "rib", "add", "::/0", "-a", "ipv6"}, "PermissionDenied", defaultRoute)
		refused(t, "alice", alice, []string{"global", "del", "all"}, "PermissionDenied", "StopBgp is forbidden")
		if r := rib(); strings.Contains(r, "0.0.0.0/0") {
			t.Errorf("gobgpd's RIB holds a default route:\n%s", r)
		}
		wants = append(wants,
			auditWant{who: injectorID, method: "AddPath", prefix: "0.0.0.0", decision: audit.DecisionDeny, reasons: []string{defaultRoute}},
			auditWant{who: aliceID, method: "StopBgp", decision: audit.DecisionDeny, reasons: []string{"StopBgp is forbidden"}},
		)
	})

	t.Run("budget exhausted", func(t *testing.T) {
		// ztp.yaml: 5 withdrawals per hour. The sixth is refused and the route stays.
		for _, p := range []string{"10.100.10.0/24", "10.100.11.0/24", "10.100.12.0/24", "10.100.13.0/24", "10.100.14.0/24"} {
			if out, err := injector("global", "rib", "del", p, "-a", "ipv4"); err != nil {
				t.Fatalf("injector gobgp global rib del %s = %q, %v", p, out, err)
			}
			prefix, _, _ := strings.Cut(p, "/")
			wants = append(wants, auditWant{who: injectorID, method: "DeletePath", prefix: prefix, decision: audit.DecisionAllow})
		}
		refused(t, "injector", injector, []string{"global", "rib", "del", "10.100.15.0/24", "-a", "ipv4"}, "ResourceExhausted", "change budget withdraw:gobgp exhausted")
		r := rib()
		if strings.Contains(r, "10.100.10.0/24") || !strings.Contains(r, "10.100.15.0/24") {
			t.Errorf("gobgpd's RIB after 5 withdrawals and a refused sixth:\n%s\nwant 10.100.10-14 gone, 10.100.15.0/24 kept", r)
		}
		wants = append(wants, auditWant{who: injectorID, method: "DeletePath", decision: audit.DecisionRatelimited, reasons: []string{"change budget withdraw:gobgp exhausted"}})
	})

	var grant string
	t.Run("break-glass neighbor change", func(t *testing.T) {
		out, err := ztpctl(ctx, ctl, cred("alice"), "breakglass", "request", "--reason", "INC-4711 new transit peer", "--ticket", "INC-4711",
			"--duration", "15m", "--scope", "/apipb.GobgpApi/AddPeer", "--scope", "/apipb.GobgpApi/AddPath")
		if err != nil {
			t.Fatalf("alice ztpctl breakglass request = %q, %v", out, err)
		}
		grant = strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
		if out, err := ztpctl(ctx, ctl, cred("alice"), "breakglass", "approve", grant); err == nil {
			t.Errorf("alice approved her own grant: %q", out)
		}
		if out, err := ztpctl(ctx, ctl, cred("bob"), "breakglass", "approve", grant, "--comment", "on the bridge"); err != nil {
			t.Fatalf("bob ztpctl breakglass approve %s = %q, %v", grant, out, err)
		}
		if out, err := alice("neighbor", "add", "127.0.0.2", "as", "65002"); err != nil {
			t.Fatalf("alice gobgp neighbor add under %s = %q, %v", grant, out, err)
		}
		if out, err := gobgp(ctx, gobgpd, "neighbor"); err != nil || !strings.Contains(out, "127.0.0.2") {
			t.Errorf("gobgp neighbor (direct) = %q, %v; want 127.0.0.2", out, err)
		}
		// Forbid holds under the grant.
		refused(t, "alice", alice, []string{"global", "rib", "add", "0.0.0.0/0", "-a", "ipv4"}, "PermissionDenied", defaultRoute)
		wants = append(wants,
			auditWant{who: aliceID, method: "AddPeer", decision: audit.DecisionAllow, grant: grant, reasons: []string{"/apipb.GobgpApi/AddPeer needs break-glass", "human changes need break-glass"}},
			auditWant{who: aliceID, method: "AddPath", prefix: "0.0.0.0", decision: audit.DecisionDeny, reasons: []string{defaultRoute}},
		)
	})

	if err := px.Stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ztp-proxy after SIGTERM: %v, want exit status 0\nstderr:\n%s", err, px.Stderr.String())
	}
	checkAudit(ctx, t, filepath.Join(dir, "data", "audit.db"), wants)
}

// gobgp runs the stock CLI against addr (gobgpd itself, or a tunnel) and returns its
// combined output.
func gobgp(ctx context.Context, addr string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.CommandContext(ctx, "gobgp", append([]string{"-u", host, "-p", port}, args...)...).CombinedOutput()
	return string(out), err
}

func ztpctl(ctx context.Context, bin string, cred []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, cred...)...)
	cmd.Env = withoutZTPEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// withoutZTPEnv is the environment without ZTP_* variables, which ztpctl would read.
func withoutZTPEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZTP_") {
			env = append(env, kv)
		}
	}
	return env
}

// startGoBGPd runs gobgpd with its API on addr and no BGP listener (port = -1), and
// returns once the stock CLI gets an answer from it.
func startGoBGPd(ctx context.Context, t *testing.T, addr string) string {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "gobgpd.toml")
	if err := os.WriteFile(conf, []byte("[global.config]\n  as = 64512\n  router-id = \"192.0.2.1\"\n  port = -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := exampletest.StartProc(t, "gobgpd", exec.Command("gobgpd", "-f", conf, "--api-hosts", addr, "--pprof-disable", "-p", "-l", "info"))
	exampletest.WaitFor(ctx, t, 30*time.Second, "gobgpd to answer on "+addr, func() bool {
		if p.Exited() {
			t.Fatalf("gobgpd exited: %v\n%s", p.Err, p.Stderr.String())
		}
		out, err := gobgp(ctx, addr, "global")
		return err == nil && strings.Contains(out, "64512")
	})
	return addr
}

type proxyProc struct{ *exampletest.Proc }

func startProxy(ctx context.Context, t *testing.T, bin, dir, listen, gobgpdAddr string) *proxyProc {
	t.Helper()
	cfg := writeExampleConfig(t, dir, listen, gobgpdAddr)
	px := &proxyProc{exampletest.StartProc(t, "ztp-proxy", exec.Command(bin, "serve", "--config", cfg, "--drain-timeout", "10s"))}
	tc := clientTLS(t, dir, "injector")
	tc.NextProtos = []string{"h2"}
	exampletest.WaitFor(ctx, t, 30*time.Second, "ztp-proxy to accept TLS connections on "+listen, func() bool {
		if px.Exited() {
			t.Fatalf("ztp-proxy exited before serving: %v\nstderr:\n%s", px.Err, px.Stderr.String())
		}
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: tc}
		conn, err := d.DialContext(ctx, "tcp", listen)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	return px
}

// clientTLS is the TLS configuration of a client of the proxy holding name's certificate
// from dir/certs.
func clientTLS(t *testing.T, dir, name string) *tls.Config {
	t.Helper()
	ca, err := pki.LoadCA(filepath.Join(dir, "certs", "ca.pem"), filepath.Join(dir, "certs", "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "certs", name+".pem"), filepath.Join(dir, "certs", name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}
}

// startTunnel runs `ztpctl tunnel` on listen with cred, until the test ends.
func startTunnel(ctx context.Context, t *testing.T, bin, listen string, cred []string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"tunnel", "--listen", listen}, cred...)...)
	cmd.Env = withoutZTPEnv()
	p := exampletest.StartProc(t, "ztpctl tunnel "+listen, cmd)
	exampletest.WaitFor(ctx, t, 15*time.Second, "ztpctl tunnel to listen on "+listen, func() bool {
		if p.Exited() {
			t.Fatalf("ztpctl tunnel exited: %v\nstderr:\n%s", p.Err, p.Stderr.String())
		}
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// freePorts returns n distinct loopback addresses that were free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for _, p := range exampletest.FreePorts(t, n) {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return addrs
}

// auditWant is a request record the audit log must hold.
type auditWant struct {
	who      string // principal id
	method   string // rpc of apipb.GobgpApi
	prefix   string // the path's nlri prefix, if not ""
	decision string
	reasons  []string
	grant    string
}

// checkAudit reads the stopped proxy's audit log and checks that the chain verifies and
// that every call the test made is there with its decoded request and decision.
func checkAudit(ctx context.Context, t *testing.T, path string, wants []auditWant) {
	t.Helper()
	if res, err := audit.VerifyFile(ctx, path); err != nil || !res.OK() {
		t.Errorf("audit.VerifyFile = %+v, %v, want an intact chain", res, err)
	}
	var recs []*audit.Record
	if err := audit.ScanFile(ctx, path, 1, func(r *audit.Record) error {
		if r.Type == audit.TypeRequest {
			recs = append(recs, r)
		}
		return nil
	}); err != nil {
		t.Fatalf("audit.ScanFile: %v", err)
	}
	defer func() {
		if t.Failed() || testing.Verbose() {
			for _, r := range recs {
				t.Logf("%d %s %s %s %s %v %s", r.Seq, r.Principal.ID, r.Method, r.Request, r.Decision, r.Reasons, r.BreakglassGrant)
			}
		}
	}()
	used := map[uint64]bool{}
	for _, w := range wants {
		i := slices.IndexFunc(recs, func(r *audit.Record) bool {
			return !used[r.Seq] && r.Principal != nil && r.Principal.ID == w.who && r.Method == "/apipb.GobgpApi/"+w.method &&
				r.Decision == w.decision && (w.prefix == "" || strings.Contains(string(r.Request), `"prefix":"`+w.prefix+`"`))
		})
		if i < 0 {
			t.Errorf("no %s request record for %s %s %s", w.decision, w.who, w.method, w.prefix)
			continue
		}
		r := recs[i]
		used[r.Seq] = true
		if !slices.Equal(r.Reasons, w.reasons) || r.BreakglassGrant != w.grant {
			t.Errorf("record %d (%s %s %s): reasons %q grant %q, want %q %q", r.Seq, w.who, w.method, w.prefix, r.Reasons, r.BreakglassGrant, w.reasons, w.grant)
		}
		if w.decision != audit.DecisionRatelimited && !r.RequestDecoded {
			t.Errorf("record %d (%s %s): request not decoded", r.Seq, w.who, w.method)
		}
	}
}
