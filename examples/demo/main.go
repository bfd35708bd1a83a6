// Command demo plays the ztp story end to end on one machine: it mints a
// throw-away CA and certificates, starts the demo fleet manager, starts the real
// ztp-proxy binary in front of it with the example policies, makes calls as
// automation and as humans, then stops the proxy and shows and verifies the
// audit log. It exits non-zero when any step does not behave as narrated.
//
//	go run ./examples/demo -bin bin
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/examples/fleet"
	"github.com/ztp-dev/ztp/examples/fleet/fleetpb"
	"github.com/ztp-dev/ztp/pki"
)

const (
	controllerID = "spiffe://demo.ztp/ns/prod/sa/fleet-controller"
	aliceID      = "spiffe://demo.ztp/user/alice"
	bobID        = "spiffe://demo.ztp/lead/bob" // an approver (sre-leads) and audit reader
	malloryID    = "spiffe://elsewhere.example/user/mallory"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the ztp-proxy and ztpctl binaries")
	policies := flag.String("policies", "examples/demo/policies", "example policy directory")
	keep := flag.Bool("keep", false, "keep the temporary directory (certs, config, audit file)")
	flag.Parse()
	if err := run(*bin, *policies, *keep, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo FAILED:", err)
		os.Exit(1)
	}
}

func run(bin, policies string, keep bool, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "ztp-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "(keeping %s)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }

	say("== 1. A throw-away CA and certificates (in %s)", dir)
	ca, err := pki.NewCA("ztp demo CA")
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(dir, "ca"); err != nil {
		return err
	}
	srvLeaf, err := ca.Issue(pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		return err
	}
	if err := pki.WriteFiles(dir, "proxy", srvLeaf); err != nil {
		return err
	}
	clients := map[string]tls.Certificate{}
	for _, c := range []struct{ id, file string }{{controllerID, "controller"}, {aliceID, "alice"}, {bobID, "bob"}} {
		l, err := ca.Issue(pki.LeafOptions{URIs: []string{c.id}, Client: true})
		if err != nil {
			return err
		}
		if err := pki.WriteFiles(dir, c.file, l); err != nil {
			return err
		}
		clients[c.id] = l.TLS
		say("   minted %s (%s.pem)", c.id, c.file)
	}
	// Mallory's certificate comes from the same CA but matches no principal rule.
	ml, err := ca.Issue(pki.LeafOptions{URIs: []string{malloryID}, Client: true})
	if err != nil {
		return err
	}
	clients[malloryID] = ml.TLS
	say("   minted %s (matches no principal rule)", malloryID)
	// The key that signs audit checkpoints, and where the proxy ships them:
	// a local directory here; in production storage the proxy host cannot
	// rewrite (or audit.checkpoint_command).
	privPEM, pubPEM, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "audit-ed25519.pem"), privPEM, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "audit-ed25519.pub"), pubPEM, 0o644); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(dir, "checkpoints"), 0o700); err != nil {
		return err
	}
	say("   audit signing key audit-ed25519.pem; checkpoints shipped to checkpoints/")

	say("\n== 2. The demo fleet manager (the production admin API)")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	backend := grpc.NewServer()
	fleet.NewServer([]string{"web", "db"}, 3).Register(backend)
	go backend.Serve(lis)
	defer backend.Stop()
	say("   fleet.v1.FleetManager on %s with machines web-1..3, db-1..3", lis.Addr())

	say("\n== 3. ztp-proxy in front of it, with the example policies")
	polAbs, err := filepath.Abs(policies)
	if err != nil {
		return err
	}
	protoset, err := filepath.Abs(filepath.Join(filepath.Dir(policies), "..", "fleet", "fleet.protoset"))
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
tls:
  cert: proxy.pem
  key: proxy-key.pem
  client_ca: ca.pem
identity:
  principals:
    - match: "spiffe://demo.ztp/ns/prod/sa/*"
      kind: automation
      groups: [fleet-controllers]
    # person: one human's /user/ and /lead/ identities are one person, so no
    # one approves their own break-glass request under their other identity.
    - match: "spiffe://demo.ztp/user/*"
      kind: human
      groups: [sre]
      person: "{*}@demo.ztp"
    - match: "spiffe://demo.ztp/lead/*"
      kind: human
      groups: [sre, sre-leads]
      person: "{*}@demo.ztp"
upstreams:
  - name: fleet
    address: %s
    services: ["fleet.v1.*"]
    descriptors: %s
    tls: { insecure: true }
policy:
  paths: [%s]
audit:
  path: audit.db
  readers: [sre-leads]
  signing_key: audit-ed25519.pem
  checkpoint_dir: checkpoints
breakglass:
  max_duration: 1h
  approvals_required: 1
  approver_groups: [sre-leads]
`, lis.Addr(), protoset, polAbs)
	cfgPath := filepath.Join(dir, "ztp.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	proxyBin, err := filepath.Abs(filepath.Join(bin, "ztp-proxy"))
	if err != nil {
		return err
	}
	say("   $ ztp-proxy validate --config %s", cfgPath)
	if b, err := exec.CommandContext(ctx, proxyBin, "validate", "--config", cfgPath).CombinedOutput(); err != nil {
		return fmt.Errorf("validate: %v\n%s", err, b)
	} else {
		say("   %s", strings.TrimSpace(string(b)))
	}
	say("   $ ztp-proxy serve --config %s", cfgPath)
	proxyCmd := exec.Command(proxyBin, "serve", "--config", cfgPath)
	stderr, err := proxyCmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := proxyCmd.Start(); err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			proxyCmd.Process.Kill()
			proxyCmd.Wait()
		}
	}()
	addr, err := waitListening(stderr)
	if err != nil {
		return err
	}
	say("   listening on %s", addr)

	dial := func(id string) (fleetpb.FleetManagerClient, func()) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{clients[id]}, RootCAs: ca.Pool(), ServerName: "localhost",
		})))
		if err != nil {
			panic(err) // NewClient only fails on malformed options
		}
		return fleetpb.NewFleetManagerClient(conn), func() { conn.Close() }
	}
	ctlBin, err := filepath.Abs(filepath.Join(bin, "ztpctl"))
	if err != nil {
		return err
	}
	// ztpctl runs the real CLI as the person whose certificate files are named.
	ztpctl := func(who string, args ...string) (string, error) {
		full := append([]string{"--server", addr, "--server-name", "localhost", "--cacert", filepath.Join(dir, "ca.pem"),
			"--cert", filepath.Join(dir, who+".pem"), "--key", filepath.Join(dir, who+"-key.pem")}, args...)
		say("\n   %s$ ztpctl %s", who, strings.Join(quoteArgs(args), " "))
		cmd := exec.CommandContext(ctx, ctlBin, full...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		for _, l := range strings.Split(strings.TrimRight(stdout.String()+stderr.String(), "\n"), "\n") {
			say("     %s", l)
		}
		return stdout.String(), err
	}

	controller, closeC := dial(controllerID)
	defer closeC()
	alice, closeA := dial(aliceID)
	defer closeA()
	mallory, closeM := dial(malloryID)
	defer closeM()

	var failures []string
	step := func(who, call string, req proto.Message, want codes.Code, wantMsg string, do func(context.Context) (proto.Message, error)) {
		body, _ := protojson.Marshal(req)
		say("\n   %s → %s %s", who, call, body)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		cctx = metadata.AppendToOutgoingContext(cctx, "x-ztp-justification", "demo: "+call)
		resp, err := do(cctx)
		st := status.Convert(err)
		if err == nil {
			b, _ := protojson.Marshal(resp)
			say("     OK %s", b)
		} else {
			say("     %s: %s", codeName(st.Code()), st.Message())
		}
		if st.Code() != want || !strings.Contains(st.Message(), wantMsg) {
			failures = append(failures, fmt.Sprintf("%s %s: got %s %q, want %s %q", who, call, st.Code(), st.Message(), want, wantMsg))
			say("     ✗ expected %s", codeName(want))
		} else {
			say("     ✓ as expected")
		}
	}

	say("\n== 4. Calls through the proxy")
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := alice.WatchMachines(watchCtx, &fleetpb.WatchMachinesRequest{Pool: "web"})
	if err != nil {
		return err
	}
	if _, err := watch.Header(); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	say("\n   alice (human) watches pool web (a long-lived server stream, allowed: reads are open)")
	events := make(chan string, 8)
	go func() {
		for {
			ev, err := watch.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- fmt.Sprintf("%s is now %s", ev.GetMachine().GetName(), ev.GetMachine().GetState())
		}
	}()

	drain := &fleetpb.DrainMachineRequest{Name: "web-1"}
	step("fleet-controller (automation)", "DrainMachine", drain, codes.OK, "", func(c context.Context) (proto.Message, error) {
		return controller.DrainMachine(c, drain)
	})
	select {
	case ev, ok := <-events:
		if !ok {
			failures = append(failures, "watch ended early")
		}
		say("     alice's watch saw: %s", ev)
	case <-time.After(5 * time.Second):
		failures = append(failures, "watch saw no event for the drain")
	}
	wipe := &fleetpb.DeleteMachinesRequest{}
	step("fleet-controller (automation)", "DeleteMachines", wipe, codes.PermissionDenied, "deleting every machine is never allowed", func(c context.Context) (proto.Message, error) {
		return controller.DeleteMachines(c, wipe)
	})
	list := &fleetpb.ListMachinesRequest{Pool: "web"}
	step("alice (human)", "ListMachines", list, codes.OK, "", func(c context.Context) (proto.Message, error) {
		return alice.ListMachines(c, list)
	})
	restart := &fleetpb.RestartMachineRequest{Name: "web-2"}
	restartAsAlice := func(c context.Context) (proto.Message, error) { return alice.RestartMachine(c, restart) }
	step("alice (human)", "RestartMachine", restart, codes.PermissionDenied, "needs break-glass", restartAsAlice)
	step("mallory (unknown principal)", "ListMachines", list, codes.Unauthenticated, "matches no rule", func(c context.Context) (proto.Message, error) {
		return mallory.ListMachines(c, list)
	})
	stopWatch()

	say("\n== 5. Break-glass: alice asks, bob (sre-leads) approves, the restart passes, the grant ends")
	grantOut, err := ztpctl("alice", "breakglass", "request", "--reason", "INC-4711 web-2 wedged, restart needed",
		"--ticket", "INC-4711", "--duration", "15m", "--scope", "/fleet.v1.FleetManager/RestartMachine")
	if err != nil {
		return fmt.Errorf("breakglass request: %w", err)
	}
	grant := strings.TrimSpace(strings.SplitN(grantOut, "\n", 2)[0])
	if _, err := ztpctl("alice", "breakglass", "approve", grant); err == nil {
		failures = append(failures, "alice approved her own grant")
	} else {
		say("     ✓ self-approval refused")
	}
	if _, err := ztpctl("bob", "breakglass", "approve", grant, "--comment", "seen on the incident bridge"); err != nil {
		return fmt.Errorf("breakglass approve: %w", err)
	}
	step("alice (human, under "+grant+")", "RestartMachine", restart, codes.OK, "", restartAsAlice)
	step("fleet-controller (automation)", "DeleteMachines", wipe, codes.PermissionDenied, "never allowed", func(c context.Context) (proto.Message, error) {
		return controller.DeleteMachines(c, wipe)
	})
	if _, err := ztpctl("alice", "breakglass", "revoke", grant, "--comment", "web-2 serving again"); err != nil {
		return fmt.Errorf("breakglass revoke: %w", err)
	}
	step("alice (human, grant revoked)", "RestartMachine", restart, codes.PermissionDenied, "needs break-glass", restartAsAlice)

	say("\n== 6. The post-incident review, through the proxy's audit API (bob is an audit reader)")
	if _, err := ztpctl("bob", "audit", "export", "--grant", grant, "--format", "csv"); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if _, err := ztpctl("bob", "audit", "verify"); err != nil {
		failures = append(failures, "ztpctl audit verify failed")
	}

	say("\n== 7. Stop the proxy (SIGTERM: drain, record the stop, close the audit log)")
	proxyCmd.Process.Signal(syscall.SIGTERM)
	err = proxyCmd.Wait()
	stopped = true
	if err != nil {
		return fmt.Errorf("ztp-proxy did not exit cleanly: %v", err)
	}
	say("   ztp-proxy exited 0")

	say("\n== 8. The whole audit log: who, when, what, why — appended before each call was forwarded")
	dbPath := filepath.Join(dir, "audit.db")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   SEQ\tTYPE\tPRINCIPAL\tMETHOD\tREQUEST\tDECISION/CODE\tREASONS")
	err = audit.ScanFile(ctx, dbPath, 1, func(r *audit.Record) error {
		who := ""
		if r.Principal != nil {
			who = r.Principal.ID
		}
		verdict := r.Decision
		if r.Type == "outcome" {
			verdict = fmt.Sprintf("%s (ref %d)", r.Code, r.Ref)
		}
		reasons := strings.Join(r.Reasons, "; ")
		if r.Type == "system" || r.Type == "breakglass" {
			reasons = r.Detail
		}
		if r.BreakglassGrant != "" && r.Type == "request" {
			verdict += " (grant)"
		}
		fmt.Fprintf(tw, "   %d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Type, who, strings.TrimPrefix(r.Method, "/fleet.v1."), compact(r.Request), verdict, reasons)
		return nil
	})
	tw.Flush()
	if err != nil {
		return err
	}
	res, err := audit.VerifyFile(ctx, dbPath)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	say("\n   hash chain verified: ok: %d records, head %s", res.Records, res.HeadHash)

	// The chain alone proves only its own consistency; the checkpoint the
	// proxy shipped at stop proves the log was not cut or rewritten since.
	ckpts, err := filepath.Glob(filepath.Join(dir, "checkpoints", "checkpoint-*.txt"))
	if err != nil || len(ckpts) == 0 {
		return fmt.Errorf("no checkpoint shipped to %s/checkpoints (%v)", dir, err)
	}
	newest := ckpts[len(ckpts)-1] // names sort by size
	say("   $ ztpctl audit verify --db audit.db --checkpoint checkpoints/%s --pubkey audit-ed25519.pub", filepath.Base(newest))
	vb, err := exec.CommandContext(ctx, ctlBin, "audit", "verify", "--db", dbPath, "--checkpoint", newest, "--pubkey", filepath.Join(dir, "audit-ed25519.pub")).CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(vb)), "\n") {
		say("     %s", l)
	}
	if err != nil {
		failures = append(failures, "ztpctl audit verify --checkpoint failed")
	}

	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "\n"))
	}
	say("\nAll steps behaved as expected.")
	return nil
}

// waitListening reads the proxy's log until it reports its address.
func waitListening(r io.Reader) (string, error) {
	re := regexp.MustCompile(`msg=serving listen=(\S+)`)
	found := make(chan string, 1)
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if m := re.FindStringSubmatch(line); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case a, ok := <-found:
		if !ok {
			return "", fmt.Errorf("ztp-proxy exited before listening")
		}
		return a, nil
	case <-time.After(20 * time.Second):
		return "", fmt.Errorf("ztp-proxy did not start listening within 20s")
	}
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " *'") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func compact(b json.RawMessage) string {
	const width = 48
	if len(b) > width {
		return string(b[:width-1]) + "…"
	}
	return string(b)
}

func codeName(c codes.Code) string {
	return strings.ToUpper(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(c.String(), "${1}_${2}"))
}
