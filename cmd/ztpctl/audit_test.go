package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

const auditorID = "spiffe://example.org/auditor/ann"

// auditEnv starts a proxy whose audit log signs checkpoints and that lets
// the auditors group read it, and makes a few calls through it. It returns
// the env and the public key file.
func auditEnv(t *testing.T) (*proxytest.Env, string) {
	t.Helper()
	dir := t.TempDir()
	priv, pub, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyFile, pubFile := filepath.Join(dir, "audit-ed25519.pem"), filepath.Join(dir, "audit-ed25519.pub")
	os.WriteFile(keyFile, priv, 0o600)
	os.WriteFile(pubFile, pub, 0o644)
	env := proxytest.Start(t, proxytest.Options{Audit: "  readers: [auditors]\n  signing_key: " + keyFile + "\n"})
	c := env.Dial(t, proxytest.DeployerID)
	for _, body := range []string{"one", "two"} {
		if _, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.Dial(t, proxytest.AliceID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err == nil {
		t.Fatal("alice's UnaryCall was allowed; the default policy denies it")
	}
	env.Server.Pipeline().WaitOutcomes()
	return env, pubFile
}

func parseLines(t *testing.T, out string) []*audit.Record {
	t.Helper()
	var recs []*audit.Record
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		r, err := audit.VerifyLine([]byte(l))
		if err != nil {
			t.Fatalf("exported line does not verify: %v\n%s", err, l)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestAuditExport(t *testing.T) {
	env, _ := auditEnv(t)
	out, err := ztpctl(t, env, auditorID, "audit", "export")
	if err != nil {
		t.Fatalf("audit export: %v", err)
	}
	all := parseLines(t, out)
	// A full export is the chain itself: an auditor verifies it alone.
	v := audit.NewChainVerifier()
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if err := v.Add([]byte(l)); err != nil {
			t.Fatalf("full export does not verify as a chain: %v", err)
		}
	}
	if len(all) < 6 || all[0].Type != audit.TypeSystem {
		t.Fatalf("export has %d records starting with %+v; want the start record and the calls", len(all), all[0])
	}

	seqs := func(recs []*audit.Record) []uint64 {
		var s []uint64
		for _, r := range recs {
			s = append(s, r.Seq)
		}
		return s
	}
	var unaryAllowed, alice []uint64
	for _, r := range all {
		if r.Method == "/grpc.testing.TestService/UnaryCall" && r.Decision == "allow" {
			unaryAllowed = append(unaryAllowed, r.Seq)
		}
		if r.Principal != nil && r.Principal.ID == proxytest.AliceID {
			alice = append(alice, r.Seq)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		want []uint64
		// Exporting is itself an audited control call: with filters that
		// match it, the export's own records may follow want.
		more bool
	}{
		{"method and decision", []string{"--method", "*/UnaryCall", "--decision", "allow"}, unaryAllowed, false},
		{"principal", []string{"--principal", proxytest.AliceID}, alice, false},
		{"since an hour ago", []string{"--since", "1h"}, seqs(all), true},
		{"until a day ago", []string{"--until", "1d"}, nil, false},
		{"until an RFC 3339 time in the future", []string{"--until", time.Now().Add(time.Hour).Format(time.RFC3339)}, seqs(all), true},
		{"from seq", []string{"--from-seq", "3", "--until", "2099-01-01"}, seqs(all)[2:], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ztpctl(t, env, auditorID, append([]string{"audit", "export"}, tc.args...)...)
			if err != nil {
				t.Fatalf("audit export %v: %v", tc.args, err)
			}
			got := seqs(parseLines(t, out))
			if len(got) < len(tc.want) || !slices.Equal(got[:len(tc.want)], tc.want) || (!tc.more && len(got) != len(tc.want)) {
				t.Errorf("audit export %v = seqs %v, want %v (more allowed: %v)", tc.args, got, tc.want, tc.more)
			}
		})
	}

	// Not a reader: refused by the proxy's built-in rules.
	if _, err := ztpctl(t, env, proxytest.AliceID, "audit", "export"); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Errorf("audit export as alice = %v, want PermissionDenied", err)
	}
}

func TestAuditExportCSV(t *testing.T) {
	env, _ := auditEnv(t)
	out, err := ztpctl(t, env, auditorID, "audit", "export", "--format", "csv", "--method", "/grpc.testing.TestService/UnaryCall")
	if err != nil {
		t.Fatalf("audit export --format csv: %v", err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse: %v\n%s", err, out)
	}
	if !slices.Equal(rows[0], audit.CSVHeader()) {
		t.Fatalf("CSV header = %v, want %v", rows[0], audit.CSVHeader())
	}
	col := func(row []string, name string) string { return row[slices.Index(rows[0], name)] }
	var decisions []string
	for _, r := range rows[1:] {
		if col(r, "type") == "request" {
			decisions = append(decisions, col(r, "decision")+" "+col(r, "principal"))
		}
	}
	want := []string{"allow " + proxytest.DeployerID, "allow " + proxytest.DeployerID, "deny " + proxytest.AliceID}
	if !slices.Equal(decisions, want) {
		t.Errorf("CSV request rows = %q, want %q", decisions, want)
	}
	// An empty export still has its header.
	out, err = ztpctl(t, env, auditorID, "audit", "export", "--format", "csv", "--decision", "error")
	if err != nil || strings.TrimSpace(out) != strings.Join(audit.CSVHeader(), ",") {
		t.Errorf("empty CSV export = %q, %v; want the header alone", out, err)
	}
}

// TestAuditExportFollow tails the log through the proxy while calls happen.
func TestAuditExportFollow(t *testing.T) {
	env, _ := auditEnv(t)
	cert, key := env.ClientFiles(t, auditorID)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(proxytest.Ctx(t))
	cmd := newRootCommand()
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--server", env.Addr, "--server-name", "localhost", "--cacert", env.CAFile, "--cert", cert, "--key", key,
		"audit", "export", "--follow", "--method", "/grpc.testing.TestService/EmptyCall"})
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(ctx)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	c := env.Dial(t, proxytest.DeployerID)
	for i := range 3 {
		if _, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
			t.Fatal(err)
		}
		// The decision record, then the outcome record of the same call.
		for _, typ := range []string{"request", "outcome"} {
			if !lines.Scan() {
				t.Fatalf("follow ended before call %d's %s record: %v", i, typ, lines.Err())
			}
			r, err := audit.VerifyLine(lines.Bytes())
			if err != nil || r.Type != typ || r.Method != "/grpc.testing.TestService/EmptyCall" {
				t.Fatalf("followed line = %+v, %v; want the %s record of EmptyCall %d", r, err, typ, i)
			}
		}
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err == nil || !strings.Contains(err.Error(), "Canceled") {
		t.Errorf("export --follow after cancel = %v, want Canceled", err)
	}
}

func TestAuditVerify(t *testing.T) {
	env, pub := auditEnv(t)
	out, err := ztpctl(t, env, auditorID, "audit", "verify")
	if err != nil || !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, " records, head ") {
		t.Fatalf("audit verify = %q, %v; want ok: N records, head H", out, err)
	}
	out, err = ztpctl(t, env, auditorID, "audit", "verify", "-o", "json")
	var rep verifyReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || rep.Records == 0 || len(rep.HeadHash) != 64 {
		t.Fatalf("audit verify -o json = %q, %v", out, err)
	}

	// A checkpoint saved now is extended by the log later.
	signed, err := ztpctl(t, env, auditorID, "audit", "checkpoint", "--pubkey", pub)
	if err != nil || !strings.HasPrefix(signed, "ztp-audit-checkpoint/v1\n") {
		t.Fatalf("audit checkpoint = %q, %v", signed, err)
	}
	cpFile := filepath.Join(t.TempDir(), "ckpt.txt")
	os.WriteFile(cpFile, []byte(signed), 0o644)
	if _, err := env.Dial(t, proxytest.DeployerID).EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	out, err = ztpctl(t, env, auditorID, "audit", "verify", "--checkpoint", cpFile, "--pubkey", pub)
	if err != nil || !strings.Contains(out, "ok: extends checkpoint of ") {
		t.Errorf("audit verify --checkpoint = %q, %v; want ok and extends", out, err)
	}
	out, err = ztpctl(t, env, auditorID, "audit", "checkpoint", "-o", "json")
	var cj struct {
		Size   uint64
		Signed string
	}
	if err != nil || json.Unmarshal([]byte(out), &cj) != nil || cj.Size == 0 || !strings.HasPrefix(cj.Signed, "ztp-audit-checkpoint/v1") {
		t.Errorf("audit checkpoint -o json = %q, %v", out, err)
	}

	otherPub := filepath.Join(t.TempDir(), "other.pub")
	_, p, _ := audit.GenerateKey(rand.Reader)
	os.WriteFile(otherPub, p, 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"checkpoint without pubkey", []string{"--checkpoint", cpFile}, "--checkpoint needs --pubkey"},
		{"pubkey without checkpoint", []string{"--pubkey", pub}, "--pubkey checks a --checkpoint"},
		{"checkpoint of another key", []string{"--checkpoint", cpFile, "--pubkey", otherPub}, "not signed by key"},
		{"missing checkpoint file", []string{"--checkpoint", cpFile + ".missing", "--pubkey", pub}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ztpctl(t, env, auditorID, append([]string{"audit", "verify"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("audit verify %v = %v, want error containing %q", tc.args, err, tc.want)
			}
		})
	}
	if _, err := ztpctl(t, env, auditorID, "audit", "checkpoint", "--pubkey", otherPub); err == nil {
		t.Errorf("audit checkpoint --pubkey (other key) succeeded, want a signature error")
	}
}

// copyAuditFile copies the running proxy's audit file (quiescent: every
// call and outcome is in) for offline commands, which cannot open the
// original while the proxy holds its lock.
func copyAuditFile(t *testing.T, env *proxytest.Env) string {
	t.Helper()
	env.Server.Pipeline().WaitOutcomes()
	b, err := os.ReadFile(filepath.Join(env.Dir, "audit.db"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "audit-copy.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuditOffline(t *testing.T) {
	env, pub := auditEnv(t)
	cpFile, cp := saveCheckpoint(t, env)

	// The running proxy holds the file: say so instead of hanging.
	_, _, err := runCtl(t, "", "audit", "export", "--db", filepath.Join(env.Dir, "audit.db"))
	if err == nil || !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), "omit --db") {
		t.Errorf("audit export --db on the live file = %v, want a clear lock error", err)
	}

	db := copyAuditFile(t, env)
	out, _, err := runCtl(t, "", "audit", "export", "--db", db)
	if err != nil {
		t.Fatalf("audit export --db: %v", err)
	}
	recs := parseLines(t, out)
	if uint64(len(recs)) < cp.Size {
		t.Fatalf("offline export has %d records, checkpoint covers %d", len(recs), cp.Size)
	}
	out, _, err = runCtl(t, "", "audit", "verify", "--db", db, "--checkpoint", cpFile, "--pubkey", pub)
	if err != nil || !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "extends checkpoint") {
		t.Fatalf("audit verify --db --checkpoint = %q, %v", out, err)
	}
	out, _, err = runCtl(t, "", "audit", "checkpoint", "--db", db, "--pubkey", pub)
	if err != nil || !strings.HasPrefix(out, "ztp-audit-checkpoint/v1\n") {
		t.Errorf("audit checkpoint --db = %q, %v", out, err)
	}

	// Damage: an edited record, and a tail cut back consistently (meta head
	// rewritten) that only the checkpoint reveals.
	edited := copyAuditFile(t, env)
	tamper(t, edited, func(r, _ *bolt.Bucket) error {
		v := bytes.Clone(r.Get(seqBytes(2)))
		v[len(v)/2] ^= 1
		return r.Put(seqBytes(2), v)
	})
	out, _, err = runCtl(t, "", "audit", "verify", "--db", edited)
	if err == nil || !strings.HasPrefix(out, "FAIL: seq 2: ") || !strings.Contains(out, "edited") || exitCode(err) != exitIntegrity {
		t.Errorf("audit verify --db (edited) = %q, %v (exit %d); want FAIL at seq 2 and exit %d", out, err, exitCode(err), exitIntegrity)
	}
	cut := copyAuditFile(t, env)
	keep := cp.Size - 2
	tamper(t, cut, func(r, m *bolt.Bucket) error {
		for seq := keep + 1; r.Get(seqBytes(seq)) != nil; seq++ {
			if err := r.Delete(seqBytes(seq)); err != nil {
				return err
			}
		}
		rec, err := audit.ParseLine(r.Get(seqBytes(keep)))
		if err != nil {
			return err
		}
		h, _ := hex.DecodeString(rec.Hash)
		return m.Put([]byte("head"), append(seqBytes(keep), h...))
	})
	if out, _, err := runCtl(t, "", "audit", "verify", "--db", cut); err != nil || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("audit verify --db (cut, no checkpoint) = %q, %v; a hash chain alone cannot tell", out, err)
	}
	out, _, err = runCtl(t, "", "audit", "verify", "--db", cut, "--checkpoint", cpFile, "--pubkey", pub, "-o", "json")
	var rep verifyReport
	json.Unmarshal([]byte(out), &rep)
	if err == nil || rep.OK || rep.Problem == nil || rep.Problem.Fault != audit.FaultMissing || rep.Problem.Seq != keep+1 {
		t.Errorf("audit verify --db (cut) --checkpoint = %q, %v; want missing at seq %d", out, err, keep+1)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"follow offline", []string{"audit", "export", "--db", db, "--follow"}, "--follow needs the running proxy"},
		{"follow and until", []string{"audit", "export", "--follow", "--until", "1h"}, "exclude each other"},
		{"bad format", []string{"audit", "export", "--db", db, "--format", "xml"}, `invalid argument "xml" for "--format" flag: must be one of jsonl | csv`},
		{"bad since", []string{"audit", "export", "--db", db, "--since", "yesterday"}, "--since"},
		{"missing file", []string{"audit", "verify", "--db", filepath.Join(t.TempDir(), "none.db")}, "none.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := runCtl(t, "", tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ztpctl %v = %v, want error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func seqBytes(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// tamper edits an audit file directly, as someone with file access would.
func tamper(t *testing.T, path string, fn func(records, meta *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket([]byte("records")), tx.Bucket([]byte("meta"))) }); err != nil {
		t.Fatal(err)
	}
}

func TestAuditKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	out := filepath.Join(dir, "audit-ed25519.pem")
	stdout, _, err := runCtl(t, "", "audit", "keygen", "--out", out)
	if err != nil {
		t.Fatalf("audit keygen: %v", err)
	}
	pubFile := filepath.Join(dir, "audit-ed25519.pub")
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{out, 0o600}, {pubFile, 0o644}} {
		fi, err := os.Stat(f.path)
		if err != nil || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: %v, %v; want mode %v", f.path, fi.Mode(), err, f.mode)
		}
	}
	signer, err := audit.LoadSigner(out)
	if err != nil {
		t.Fatalf("LoadSigner(keygen's key) = %v", err)
	}
	pemBytes, _ := os.ReadFile(pubFile)
	pub, err := audit.ParsePublicKey(pemBytes)
	if err != nil || !pub.Equal(signer.Public()) {
		t.Errorf("the .pub file holds %x, %v; want the private key's public half", pub, err)
	}
	if !strings.Contains(stdout, audit.VerifierKey(pub)) {
		t.Errorf("keygen output %q lacks the verifier key", stdout)
	}
	if _, _, err := runCtl(t, "", "audit", "keygen", "--out", out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second keygen = %v, want a refusal to overwrite", err)
	}
	if _, _, err := runCtl(t, "", "audit", "keygen", "--out", out, "--force", "-o", "json"); err != nil {
		t.Errorf("keygen --force = %v", err)
	}
	if again, _ := audit.LoadSigner(out); again == nil || again.Public().Equal(signer.Public()) {
		t.Errorf("keygen --force did not replace the key")
	}
	if _, _, err := runCtl(t, "", "audit", "keygen"); err == nil || !strings.Contains(err.Error(), "--out") {
		t.Errorf("keygen without --out = %v", err)
	}
}

func TestParseTimeFlag(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"2026-11-25T08:30:00Z", time.Date(2026, 11, 25, 8, 30, 0, 0, time.UTC), true},
		{"2026-11-25T09:30:00.5+01:00", time.Date(2026, 11, 25, 8, 30, 0, 5e8, time.UTC), true},
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), true},
		{"24h", now.Add(-24 * time.Hour), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"7d", now.Add(-7 * 24 * time.Hour), true},
		{"2w", now.Add(-14 * 24 * time.Hour), true},
		{"-1h", time.Time{}, false},
		{"d", time.Time{}, false},
		{"1.5d", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	} {
		got, err := parseTimeFlag(tc.in, now)
		if (err == nil) != tc.ok || (tc.ok && !got.Equal(tc.want)) {
			t.Errorf("parseTimeFlag(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestAuditHelpHasExamples(t *testing.T) {
	root := newRootCommand()
	audit, _, err := root.Find([]string{"audit"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range audit.Commands() {
		if c.Example == "" || c.RunE == nil {
			t.Errorf("ztpctl audit %s: Example %q, RunE set %v; want both", c.Name(), c.Example, c.RunE != nil)
		}
	}
	if len(audit.Commands()) != 4 {
		t.Errorf("ztpctl audit has %d subcommands, want export, verify, checkpoint, keygen", len(audit.Commands()))
	}
}

// A record larger than gRPC's default 4 MiB message (a large request, recorded whole)
// must not make the export fail: the control API and ztpctl carry it.
func TestAuditExportRecordOverFourMiB(t *testing.T) {
	// Renderings are recorded whole up to audit.max_request_bytes (default 64 KiB).
	env := proxytest.Start(t, proxytest.Options{Audit: "  readers: [auditors]\n  max_request_bytes: 8388608\n"})
	body := bytes.Repeat([]byte{0xff}, 3584<<10) // 3.5 MiB; base64 in the record: 4.7 MiB
	if _, err := env.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: body}}); err != nil {
		t.Fatal(err)
	}
	env.Server.Pipeline().WaitOutcomes()
	out, err := ztpctl(t, env, auditorID, "audit", "export", "--method", "*/UnaryCall")
	if err != nil {
		t.Fatalf("audit export: %v", err)
	}
	recs := parseLines(t, out)
	if len(recs) == 0 || len(recs[0].Request) < 4<<20 {
		t.Fatalf("export lacks the large record (%d records)", len(recs))
	}
}
