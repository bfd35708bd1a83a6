package etcd_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
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

// defaultIdle is how long the watch stays idle. grpc-go's default keepalive enforcement
// (MinTime 5m, PermitWithoutStream false) answers etcdctl's 10s pings with GOAWAY after
// the third strike, about 30s in; 40s is past that with margin.
const defaultIdle = 40 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	exampletest.RemoveBuilds()
	os.Exit(code)
}

// buildProxy builds cmd/ztp-proxy once per test binary (with -race under the race
// detector, so that a data race in the real proxy fails its exit-code check).
func buildProxy(t *testing.T) string {
	t.Helper()
	return exampletest.Build(t, "github.com/ztp-dev/ztp/cmd/ztp-proxy")
}

// buildCtl builds cmd/ztpctl once per test binary.
func buildCtl(t *testing.T) string {
	t.Helper()
	return exampletest.Build(t, "github.com/ztp-dev/ztp/cmd/ztpctl")
}

// requireEtcd skips the test when it cannot run here, or fails it when CI said it must.
func requireEtcd(t *testing.T) {
	t.Helper()
	exampletest.Require(t, "ZTP_REQUIRE_ETCD", "apt-get install -y etcd-server etcd-client", "etcd", "etcdctl", "bash")
}

// idlePeriod is how long the watch is left idle: ZTP_ETCD_IDLE (e.g. 5m, for a manual
// soak) or defaultIdle.
func idlePeriod(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("ZTP_ETCD_IDLE")
	if s == "" {
		return defaultIdle
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		t.Fatalf("ZTP_ETCD_IDLE=%q: want a duration such as 5m", s)
	}
	return d
}

// TestEtcdEndToEnd drives a real etcd with a real etcdctl through the real ztp-proxy
// binary, configured with the committed ztp.yaml, policies and protoset, then stops the
// proxy and reads the audit log it left behind.
//
// What reached etcd is judged by etcd's own metrics (grpc_server_started_total), not by
// what the proxy says about itself.
func TestEtcdEndToEnd(t *testing.T) {
	requireEtcd(t)
	idle := idlePeriod(t)
	ctx := testCtx(t, idle+3*time.Minute)
	bin := buildProxy(t)

	ports := exampletest.FreePorts(t, 4)
	etcd := startEtcd(ctx, t, ports[0], ports[1], ports[2])
	dir := t.TempDir()
	mintCerts(t, dir)
	px := startProxy(ctx, t, bin, dir, fmt.Sprintf("127.0.0.1:%d", ports[3]), etcd.addr)

	deployer := px.client("deployer", deployerID)
	alice := px.client("alice", aliceID)
	var wants []auditWant // what the audit log must show afterwards, in no particular order

	// The watch comes first, so that it idles while everything else runs: the other
	// calls use their own connections (one etcdctl process each), so the watch's
	// connection carries nothing but etcdctl's keepalive pings.
	watchBase := etcd.started(ctx, t, "etcdserverpb.Watch", "Watch")
	watch := px.start(ctx, t, alice, "watch", "/e2e/watched")
	exampletest.WaitFor(ctx, t, 15*time.Second, "the watch to reach etcd", func() bool {
		return etcd.started(ctx, t, "etcdserverpb.Watch", "Watch") == watchBase+1
	})
	idleSince := time.Now()
	wants = append(wants, auditWant{who: alice, method: "/etcdserverpb.Watch/Watch", fields: map[string]string{"createRequest.key": b64("/e2e/watched")}})

	t.Run("automation writes", func(t *testing.T) {
		steps := []struct {
			who   client
			args  []string
			stdin string
			want  string // stdout
			audit auditWant
		}{
			{who: deployer, args: []string{"put", "/e2e/config/a", "1"}, want: "OK\n",
				audit: auditWant{method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/e2e/config/a"), "value": b64("1")}}},
			{who: deployer, args: []string{"put", "/e2e/config/b", "2"}, want: "OK\n",
				audit: auditWant{method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/e2e/config/b"), "value": b64("2")}}},
			{who: deployer, args: []string{"put", "/e2e/config/c", "3"}, want: "OK\n",
				audit: auditWant{method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/e2e/config/c"), "value": b64("3")}}},
			{who: deployer, args: []string{"get", "/e2e/config/a"}, want: "/e2e/config/a\n1\n",
				audit: auditWant{method: "/etcdserverpb.KV/Range", fields: map[string]string{"key": b64("/e2e/config/a")}}},
			{who: deployer, args: []string{"del", "/e2e/config/a"}, want: "1\n",
				audit: auditWant{method: "/etcdserverpb.KV/DeleteRange", fields: map[string]string{"key": b64("/e2e/config/a"), "rangeEnd": ""}}},
			// The prefix's range end is the prefix with its last byte incremented: '/'+1 = '0'.
			{who: deployer, args: []string{"del", "--prefix", "/e2e/config/"}, want: "2\n",
				audit: auditWant{method: "/etcdserverpb.KV/DeleteRange", fields: map[string]string{"key": b64("/e2e/config/"), "rangeEnd": b64("/e2e/config0")}}},
			{who: deployer, args: []string{"put", "/e2e/txn", "a"}, want: "OK\n",
				audit: auditWant{method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/e2e/txn"), "value": b64("a")}}},
			// etcdctl txn reads compares, success ops and failure ops from stdin, each
			// section ended by an empty line.
			{who: deployer, args: []string{"txn"}, stdin: "value(\"/e2e/txn\") = \"a\"\n\nput /e2e/txn b\n\nput /e2e/txn c\n\n", want: "SUCCESS\n\nOK\n",
				audit: auditWant{method: "/etcdserverpb.KV/Txn", fields: map[string]string{
					"compare.0.key": b64("/e2e/txn"), "compare.0.value": b64("a"),
					"success.0.requestPut.key": b64("/e2e/txn"), "success.0.requestPut.value": b64("b"),
					"failure.0.requestPut.value": b64("c"),
				}}},
			{who: alice, args: []string{"get", "/e2e/txn"}, want: "/e2e/txn\nb\n",
				audit: auditWant{method: "/etcdserverpb.KV/Range", fields: map[string]string{"key": b64("/e2e/txn")}}},
		}
		for _, s := range steps {
			out, stderr, err := px.etcdctl(ctx, s.who, s.stdin, s.args...)
			if err != nil || out != s.want {
				t.Fatalf("%s etcdctl %s = %q, %v (stderr %q), want %q", s.who.name, strings.Join(s.args, " "), out, err, stderr, s.want)
			}
			s.audit.who = s.who
			wants = append(wants, s.audit)
		}
	})

	t.Run("human reads", func(t *testing.T) {
		out, stderr, err := px.etcdctl(ctx, alice, "", "endpoint", "status")
		// One line per endpoint: the proxy's address, then etcd's member id and version.
		if err != nil || !strings.HasPrefix(out, px.addr+", ") || !strings.Contains(out, ", 3.4.") {
			t.Errorf("alice etcdctl endpoint status = %q, %v (stderr %q), want a status line for %s", out, err, stderr, px.addr)
		}
		wants = append(wants, auditWant{who: alice, method: "/etcdserverpb.Maintenance/Status"})

		// member list shows etcd's real client URL: why etcd must be reachable only
		// through the proxy (README, security).
		out, stderr, err = px.etcdctl(ctx, alice, "", "member", "list")
		if err != nil || !strings.Contains(out, "http://"+etcd.addr) {
			t.Errorf("alice etcdctl member list = %q, %v (stderr %q), want etcd's client URL http://%s", out, err, stderr, etcd.addr)
		}
		wants = append(wants, auditWant{who: alice, method: "/etcdserverpb.Cluster/MemberList"})
	})

	t.Run("leases", func(t *testing.T) {
		// TTL 5: etcdctl sends a keep-alive every TTL/3, so two arrive within seconds.
		out, stderr, err := px.etcdctl(ctx, deployer, "", "lease", "grant", "5")
		var hexID string
		if err != nil || !strings.HasSuffix(out, " granted with TTL(5s)\n") {
			t.Fatalf("deployer etcdctl lease grant 5 = %q, %v (stderr %q), want \"lease ID granted with TTL(5s)\"", out, err, stderr)
		}
		_, err = fmt.Sscanf(out, "lease %s granted", &hexID)
		id, perr := strconv.ParseUint(hexID, 16, 64)
		if err != nil || perr != nil {
			t.Fatalf("lease id %q from %q: %v, %v", hexID, out, err, perr)
		}
		decID := strconv.FormatInt(int64(id), 10) // protojson renders int64 as a decimal string
		wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.Lease/LeaseGrant", fields: map[string]string{"TTL": "5"}})

		out, stderr, err = px.etcdctl(ctx, deployer, "", "put", "--lease="+hexID, "/e2e/leased", "v")
		if err != nil || out != "OK\n" {
			t.Fatalf("deployer etcdctl put --lease = %q, %v (stderr %q), want OK", out, err, stderr)
		}
		wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/e2e/leased"), "lease": decID}})

		ka := px.start(ctx, t, deployer, "lease", "keep-alive", hexID)
		keepalives := func() int { return strings.Count(ka.Stdout.String(), " keepalived with TTL(5)") }
		exampletest.WaitFor(ctx, t, 15*time.Second, "two keep-alive responses", func() bool { return keepalives() >= 2 })
		ka.Stop(t, syscall.SIGTERM, 5*time.Second)
		t.Logf("lease keep-alive: %d responses before it was stopped", keepalives())
		wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.Lease/LeaseKeepAlive", fields: map[string]string{"ID": decID}, minMessages: 2})

		out, stderr, err = px.etcdctl(ctx, alice, "", "lease", "timetolive", "--keys", hexID)
		if err != nil || !strings.Contains(out, "attached keys([/e2e/leased])") {
			t.Errorf("alice etcdctl lease timetolive --keys = %q, %v (stderr %q), want attached keys([/e2e/leased])", out, err, stderr)
		}
		wants = append(wants, auditWant{who: alice, method: "/etcdserverpb.Lease/LeaseTimeToLive", fields: map[string]string{"ID": decID, "keys": "true"}})

		out, stderr, err = px.etcdctl(ctx, alice, "", "lease", "list")
		if err != nil || !strings.Contains(out, hexID) {
			t.Errorf("alice etcdctl lease list = %q, %v (stderr %q), want it to list %s", out, err, stderr, hexID)
		}
		wants = append(wants, auditWant{who: alice, method: "/etcdserverpb.Lease/LeaseLeases"})

		out, stderr, err = px.etcdctl(ctx, deployer, "", "lease", "revoke", hexID)
		if err != nil || !strings.Contains(out, " revoked") {
			t.Errorf("deployer etcdctl lease revoke = %q, %v (stderr %q), want revoked", out, err, stderr)
		}
		wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.Lease/LeaseRevoke", fields: map[string]string{"ID": decID}})
	})

	t.Run("denials", func(t *testing.T) {
		wipe := map[string]string{"key": "AA==", "rangeEnd": "AA=="}
		tests := []struct {
			name    string
			who     client
			args    []string
			service string // etcd's metric for this method must not move
			method  string
			fields  map[string]string
			reason  string
		}{
			{
				name: "human put", who: alice, args: []string{"put", "/e2e/alice", "x"},
				service: "etcdserverpb.KV", method: "Put", fields: map[string]string{"key": b64("/e2e/alice")},
				reason: "human writes need break-glass",
			},
			// Deletes are judged by the keys they would remove: this keyspace is small,
			// so a whole-keyspace delete is refused as open-ended (a grant could lift
			// that). TestEtcdEffectQueries shows every spelling forbidden where it would
			// remove more than the policy's per-call maximum.
			{
				name: "keyspace wipe with --from-key", who: deployer, args: []string{"del", "", "--from-key"},
				service: "etcdserverpb.KV", method: "DeleteRange", fields: wipe,
				reason: "open-ended delete (--from-key) needs break-glass",
			},
			{
				name: "keyspace wipe with --prefix", who: deployer, args: []string{"del", "", "--prefix"},
				service: "etcdserverpb.KV", method: "DeleteRange", fields: wipe,
				reason: "open-ended delete (--from-key) needs break-glass",
			},
			{
				name: "open-ended delete", who: deployer, args: []string{"del", "/e2e", "--from-key"},
				service: "etcdserverpb.KV", method: "DeleteRange", fields: map[string]string{"key": b64("/e2e"), "rangeEnd": "AA=="},
				reason: "open-ended delete (--from-key) needs break-glass",
			},
			{
				name: "defragment", who: deployer, args: []string{"defrag"},
				service: "etcdserverpb.Maintenance", method: "Defragment",
				reason: "/etcdserverpb.Maintenance/Defragment needs break-glass",
			},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := etcd.started(ctx, t, tc.service, tc.method)
				out, stderr, err := px.etcdctl(ctx, tc.who, "", tc.args...)
				after := etcd.started(ctx, t, tc.service, tc.method)
				call := fmt.Sprintf("%s etcdctl %q", tc.who.name, tc.args)
				if err == nil {
					t.Errorf("%s succeeded (stdout %q), want a non-zero exit", call, out)
				}
				want := "PermissionDenied desc = ztp: denied: " + tc.reason
				if !strings.Contains(stderr, want) {
					t.Errorf("%s stderr = %q, want it to contain %q", call, stderr, want)
				}
				if after != before {
					t.Errorf("etcd's grpc_server_started_total for %s/%s went %d -> %d during %s, want unchanged: the call reached etcd", tc.service, tc.method, before, after, call)
				}
				wants = append(wants, auditWant{who: tc.who, method: "/" + tc.service + "/" + tc.method, fields: tc.fields, decision: audit.DecisionDeny, reasons: []string{tc.reason}, code: "PERMISSION_DENIED"})
			})
		}
		// Nothing was wiped.
		out, stderr, err := px.etcdctl(ctx, deployer, "", "get", "/e2e/txn", "--print-value-only")
		if err != nil || out != "b\n" {
			t.Errorf("after the refused wipes, etcdctl get /e2e/txn = %q, %v (stderr %q), want \"b\"", out, err, stderr)
		}
		wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.KV/Range", fields: map[string]string{"key": b64("/e2e/txn")}})
	})

	t.Run("idle watch delivers once", func(t *testing.T) {
		if rest := idle - time.Since(idleSince); rest > 0 {
			t.Logf("leaving the watch idle for another %v (%v in all)", rest.Round(time.Second), idle)
			// The deliberate idle period: nothing to wait for but time itself.
			select {
			case <-time.After(rest):
			case <-watch.Done:
				t.Fatalf("etcdctl watch exited while idle: %v\nstdout: %s\nstderr: %s", watch.Err, watch.Stdout.String(), watch.Stderr.String())
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
		for _, v := range []string{"after-idle", "sentinel"} {
			if out, stderr, err := px.etcdctl(ctx, deployer, "", "put", "/e2e/watched", v); err != nil || out != "OK\n" {
				t.Fatalf("deployer etcdctl put /e2e/watched %s = %q, %v (stderr %q)", v, out, err, stderr)
			}
			wants = append(wants, auditWant{who: deployer, method: "/etcdserverpb.KV/Put", fields: map[string]string{"key": b64("/e2e/watched"), "value": b64(v)}})
		}
		// Events arrive in order on one watch; a re-created watch would replay from its
		// last revision, so a duplicate of "after-idle" would come before "sentinel".
		exampletest.WaitFor(ctx, t, 15*time.Second, "the watch to print the sentinel event", func() bool {
			return slices.Contains(lines(watch.Stdout.String()), "sentinel")
		})
		got := lines(watch.Stdout.String())
		if n := count(got, "after-idle"); n != 1 {
			t.Errorf("the watch printed the event after the idle period %d times, want exactly 1; watch output:\n%s", n, strings.Join(got, "\n"))
		}
		if n := etcd.started(ctx, t, "etcdserverpb.Watch", "Watch"); n != watchBase+1 {
			t.Errorf("etcd's grpc_server_started_total for Watch went %d -> %d, want +1: the watch was cut and re-created", watchBase, n)
		}
	})

	// Stop the clients, then the proxy: SIGTERM must drain and exit 0.
	watch.Stop(t, syscall.SIGTERM, 5*time.Second)
	if err := px.Stop(t, syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("ztp-proxy after SIGTERM: %v, want exit status 0 (clean drain)\nstderr:\n%s", err, px.Stderr.String())
	}

	t.Run("audit log", func(t *testing.T) {
		checkAudit(ctx, t, px.auditPath, wants)
	})
}

// client is an etcdctl identity: a principal and its certificate files.
type client struct {
	name, id  string
	cert, key string
}

func (c client) String() string { return c.name }

// proxyProc is the ztp-proxy subprocess.
type proxyProc struct {
	*exampletest.Proc
	addr      string
	dir       string // holds ztp.yaml, certs/ and data/
	auditPath string
}

// startExample starts a real etcd on free loopback ports and the real ztp-proxy in front
// of it with the example's ztp.yaml (edits applied), certificates minted into a fresh
// directory (px.dir).
func startExample(ctx context.Context, t *testing.T, edits ...func(doc map[string]any)) (*etcdProc, *proxyProc) {
	t.Helper()
	bin := buildProxy(t)
	ports := exampletest.FreePorts(t, 4)
	etcd := startEtcd(ctx, t, ports[0], ports[1], ports[2])
	dir := t.TempDir()
	mintCerts(t, dir)
	return etcd, startProxy(ctx, t, bin, dir, fmt.Sprintf("127.0.0.1:%d", ports[3]), etcd.addr, edits...)
}

func startProxy(ctx context.Context, t *testing.T, bin, dir, listen, etcdAddr string, edits ...func(doc map[string]any)) *proxyProc {
	t.Helper()
	cfg := writeExampleConfig(t, dir, listen, etcdAddr, edits...)
	cmd := exec.Command(bin, "serve", "--config", cfg, "--drain-timeout", "10s", "--log-level", "debug")
	px := &proxyProc{Proc: exampletest.StartProc(t, "ztp-proxy", cmd), addr: listen, dir: dir, auditPath: filepath.Join(dir, "data", "audit.db")}

	ca, err := pki.LoadCA(filepath.Join(dir, "certs", "ca.pem"), filepath.Join(dir, "certs", "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "certs", "deployer.pem"), filepath.Join(dir, "certs", "deployer-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", NextProtos: []string{"h2"}}
	exampletest.WaitFor(ctx, t, 30*time.Second, "ztp-proxy to accept TLS connections on "+listen, func() bool {
		if px.Exited() {
			t.Fatalf("ztp-proxy exited before serving: %v\nstderr:\n%s", px.Err, px.Stderr.String())
		}
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: tc}
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		conn, err := d.DialContext(dctx, "tcp", listen)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	return px
}

func (px *proxyProc) client(name, id string) client {
	return client{
		name: name, id: id,
		cert: filepath.Join(px.dir, "certs", name+".pem"),
		key:  filepath.Join(px.dir, "certs", name+"-key.pem"),
	}
}

// etcdctlCmd is etcdctl pointed at the proxy as c, with the caller's ETCDCTL_*
// environment removed (etcdctl refuses a flag that an ETCDCTL_ variable also sets).
func (px *proxyProc) etcdctlCmd(ctx context.Context, c client, args ...string) *exec.Cmd {
	full := append([]string{
		"--endpoints=" + px.addr,
		"--cacert=" + filepath.Join(px.dir, "certs", "ca.pem"),
		"--cert=" + c.cert,
		"--key=" + c.key,
		"--dial-timeout=5s",
		"--command-timeout=10s",
	}, args...)
	cmd := exec.CommandContext(ctx, "etcdctl", full...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCDCTL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "ETCDCTL_API=3")
	return cmd
}

// etcdctl runs one etcdctl command to completion.
func (px *proxyProc) etcdctl(ctx context.Context, c client, stdin string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := px.etcdctlCmd(ctx, c, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// start runs a long-lived etcdctl command (watch, lease keep-alive) in the background
// until the test stops it (or ctx ends).
func (px *proxyProc) start(ctx context.Context, t *testing.T, c client, args ...string) *exampletest.Proc {
	t.Helper()
	return exampletest.StartProc(t, "etcdctl "+strings.Join(args, " "), px.etcdctlCmd(ctx, c, args...))
}

// etcdProc is a single-member etcd started by start-etcd.sh.
type etcdProc struct {
	*exampletest.Proc
	addr    string // client address, host:port
	metrics string // URL of /metrics
}

func startEtcd(ctx context.Context, t *testing.T, client, peer, metrics int) *etcdProc {
	t.Helper()
	data := filepath.Join(t.TempDir(), "etcd")
	cmd := exec.Command("bash", "start-etcd.sh", strconv.Itoa(client), strconv.Itoa(peer), data, strconv.Itoa(metrics))
	e := &etcdProc{
		Proc:    exampletest.StartProc(t, "etcd", cmd),
		addr:    fmt.Sprintf("127.0.0.1:%d", client),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics),
	}
	health := fmt.Sprintf("http://127.0.0.1:%d/health", client)
	exampletest.WaitFor(ctx, t, 30*time.Second, "etcd to report "+health+" healthy", func() bool {
		if e.Exited() {
			t.Fatalf("etcd exited: %v\nstderr:\n%s", e.Err, exampletest.Tail(e.Stderr.String(), 40))
		}
		body, err := httpGet(ctx, health)
		return err == nil && strings.Contains(body, `"health":"true"`)
	})
	return e
}

// started returns etcd's grpc_server_started_total for one method: how many calls of it
// reached etcd. etcd registers every method at start, so a missing series is an error.
func (e *etcdProc) started(ctx context.Context, t *testing.T, service, method string) int64 {
	t.Helper()
	body, err := httpGet(ctx, e.metrics)
	if err != nil {
		t.Fatalf("etcd metrics: %v", err)
	}
	m, s := `grpc_method="`+method+`"`, `grpc_service="`+service+`"`
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "grpc_server_started_total{") || !strings.Contains(line, m) || !strings.Contains(line, s) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("etcd metrics line %q: %v", line, err)
		}
		return int64(v)
	}
	t.Fatalf("etcd metrics have no grpc_server_started_total for %s/%s", service, method)
	return 0
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// auditWant is a request record the audit log must hold.
type auditWant struct {
	who         client
	method      string
	fields      map[string]string // dotted path in the decoded request -> value ("" = absent)
	decision    string            // default allow
	reasons     []string
	code        string // the outcome record's code; "" = any (calls cut by killing etcdctl)
	minMessages uint64 // the outcome's messages_in must be at least this
}

func (w auditWant) String() string {
	return fmt.Sprintf("%s %s %v", w.who.id, w.method, w.fields)
}

// checkAudit reads the stopped proxy's audit log from its file and checks that the chain
// verifies and that every call the test made is there, with its decoded request, decision
// and outcome.
func checkAudit(ctx context.Context, t *testing.T, path string, wants []auditWant) {
	t.Helper()
	res, err := audit.VerifyFile(ctx, path)
	if err != nil || !res.OK() {
		t.Errorf("audit.VerifyFile = %+v, %v, want an intact chain", res, err)
	}
	var recs []*audit.Record
	if err := audit.ScanFile(ctx, path, 1, func(r *audit.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatalf("audit.ScanFile: %v", err)
	}
	t.Logf("audit log: %d records, chain head seq %d", len(recs), res.HeadSeq)
	defer func() {
		if t.Failed() || testing.Verbose() {
			for _, r := range recs {
				t.Logf("%d %s %s %s %s %s %v %s", r.Seq, r.Type, principalID(r), r.Method, r.Request, r.Decision, r.Reasons, r.Code+r.Detail)
			}
		}
	}()
	if len(recs) < 2 || recs[0].Type != audit.TypeSystem || !strings.HasPrefix(recs[0].Detail, "started") ||
		recs[len(recs)-1].Type != audit.TypeSystem || recs[len(recs)-1].Detail != "stopped" {
		t.Errorf("audit log does not start with a system \"started\" record and end with \"stopped\" (%d records)", len(recs))
	}

	// The stream bounds' defaults (first_message_timeout, max_streams_per_principal)
	// never end or refuse a call of etcdctl's: its watch and lease keep-alive send
	// their first message at once.
	for _, r := range recs {
		if r.Type == audit.TypeRequest && len(r.Reasons) == 1 &&
			(strings.HasPrefix(r.Reasons[0], "no request message within") || strings.HasPrefix(r.Reasons[0], "limits.max_streams_per_principal")) {
			t.Errorf("record %d: %s's %s was ended or refused by a stream bound: %q", r.Seq, principalID(r), r.Method, r.Reasons[0])
		}
	}

	requests := map[uint64]*audit.Record{}
	outcomes := map[uint64]*audit.Record{} // by ref
	for _, r := range recs {
		switch r.Type {
		case audit.TypeRequest:
			requests[r.Seq] = r
			if r.Decision == audit.DecisionError {
				t.Errorf("record %d: decision error (%v): the policy failed to evaluate", r.Seq, r.Reasons)
			}
		case audit.TypeOutcome:
			outcomes[r.Ref] = r
		}
	}

	used := map[uint64]bool{}
	for _, w := range wants {
		rec := findRequest(t, recs, used, w)
		if rec == nil {
			t.Errorf("no request record for %s", w)
			continue
		}
		used[rec.Seq] = true
		decision := w.decision
		if decision == "" {
			decision = audit.DecisionAllow
		}
		if rec.Decision != decision || !slices.Equal(rec.Reasons, w.reasons) {
			t.Errorf("record %d (%s): decision %q reasons %q, want %q %q", rec.Seq, w, rec.Decision, rec.Reasons, decision, w.reasons)
		}
		if rec.Principal.Kind == "" || rec.PolicyVersion == "" || !rec.RequestDecoded {
			t.Errorf("record %d (%s): principal %+v, policy_version %q, request_decoded %v: want all set", rec.Seq, w, rec.Principal, rec.PolicyVersion, rec.RequestDecoded)
		}
		out := outcomes[rec.Seq]
		switch {
		case out == nil:
			t.Errorf("no outcome record refers to record %d (%s)", rec.Seq, w)
		case w.code == "" && decision == audit.DecisionAllow && out.Code == "":
			t.Errorf("outcome %d of %s has no code", out.Seq, w)
		case w.code != "" && out.Code != w.code:
			t.Errorf("outcome %d of %s: code %q, want %q", out.Seq, w, out.Code, w.code)
		case out.MessagesIn < max(w.minMessages, 1):
			t.Errorf("outcome %d of %s: messages_in %d, want at least %d", out.Seq, w, out.MessagesIn, max(w.minMessages, 1))
		}
		if w.code == "" && decision == audit.DecisionAllow && out != nil && out.Code != "OK" && out.Code != "CANCELLED" {
			t.Errorf("outcome %d of %s: code %q, want OK or CANCELLED", out.Seq, w, out.Code)
		}
	}

	// One Watch call, with one message: a re-created watch would be a second call.
	var watchCalls, keepAlives int
	for _, r := range requests {
		switch {
		case r.Method == "/etcdserverpb.Watch/Watch" && r.MessageIndex == 0:
			watchCalls++
		case r.Method == "/etcdserverpb.Lease/LeaseKeepAlive":
			keepAlives++
		}
	}
	if watchCalls != 1 {
		t.Errorf("audit log has %d Watch calls, want 1", watchCalls)
	}
	t.Logf("audit log: %d LeaseKeepAlive messages decided", keepAlives)
	if keepAlives < 2 {
		t.Errorf("audit log has %d LeaseKeepAlive request records, want at least 2 (one per keep-alive message)", keepAlives)
	}
}

// findRequest returns the first request record not yet used that matches w.
func findRequest(t *testing.T, recs []*audit.Record, used map[uint64]bool, w auditWant) *audit.Record {
	t.Helper()
	for _, r := range recs {
		if r.Type != audit.TypeRequest || used[r.Seq] || r.Method != w.method || r.Principal == nil || r.Principal.ID != w.who.id || r.MessageIndex != 0 {
			continue
		}
		var req any
		if len(r.Request) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(r.Request)))
			dec.UseNumber()
			if err := dec.Decode(&req); err != nil {
				t.Fatalf("record %d: request %s: %v", r.Seq, r.Request, err)
			}
		}
		match := true
		for path, want := range w.fields {
			if got := lookup(req, path); got != want {
				match = false
				break
			}
		}
		if match {
			return r
		}
	}
	return nil
}

// lookup follows a dotted path ("success.0.requestPut.key") through decoded JSON and
// returns the value as text, or "" when it is absent.
func lookup(v any, path string) string {
	for _, seg := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(x) {
				return ""
			}
			v = x[i]
		default:
			return ""
		}
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func principalID(r *audit.Record) string {
	if r.Principal == nil {
		return "-"
	}
	return r.Principal.ID
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func count(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}
