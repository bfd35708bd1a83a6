package proxy_test

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestCheckpointsLeaveTheHost: with audit.checkpoint_dir and
// audit.checkpoint_command, the proxy ships its checkpoints by itself — no
// cron job — and the last one, signed at shutdown after the "stopped"
// record, covers the whole log in both places.
func TestCheckpointsLeaveTheHost(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	out := t.TempDir()
	env := proxytest.Prepare(t, proxytest.Options{
		Audit: "  signing_key: audit-ed25519.pem\n  checkpoint_dir: checkpoints\n" +
			"  checkpoint_command: [sh, -c, 'cat > \"$0/$ZTP_CHECKPOINT_NAME\"', " + out + "]\n",
	})
	priv, pubPEM, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(env.Dir, "audit-ed25519.pem"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, err := audit.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(env.Dir, "checkpoints")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := env.NewServer(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(proxytest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyFile(proxytest.Ctx(t), env.AuditFile)
	if err != nil || res.Records < 2 {
		t.Fatalf("VerifyFile = %+v, %v; want started and stopped records", res, err)
	}
	for _, d := range []string{dir, out} {
		entries, err := os.ReadDir(d)
		if err != nil || len(entries) == 0 {
			t.Fatalf("%s: %v, %d files; want the shipped checkpoints", d, err, len(entries))
		}
		newest := entries[len(entries)-1].Name() // names sort by size
		b, err := os.ReadFile(filepath.Join(d, newest))
		if err != nil {
			t.Fatal(err)
		}
		c, err := audit.OpenCheckpoint(b, pub)
		if err != nil {
			t.Fatalf("%s/%s: %v", d, newest, err)
		}
		if c.Size != res.Records || c.Hash != res.HeadHash {
			t.Errorf("%s: newest checkpoint covers %d records (%s), want the whole log: %d (%s)", d, c.Size, c.Hash, res.Records, res.HeadHash)
		}
	}
}

// TestDamagedAuditFileRefusesStart: a truncated audit file stops the proxy
// with one line naming the key, the file and the damage — not a panic.
func TestDamagedAuditFileRefusesStart(t *testing.T) {
	env := proxytest.Prepare(t, proxytest.Options{})
	srv, err := env.NewServer(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(proxytest.Ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(env.AuditFile, 8192); err != nil {
		t.Fatal(err)
	}
	_, err = env.NewServer(t)
	if err == nil || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "audit.path") || !strings.Contains(err.Error(), env.AuditFile) || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("proxy start on a truncated audit file = %v; want one line naming audit.path, the file and the truncation", err)
	}
	t.Log(err)
}
