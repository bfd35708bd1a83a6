package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// reseal recomputes the hash of an exported line after its content changed,
// with prev as its new prev_hash, following the README's public recipe —
// what an attacker with the file and the format can do without any key.
func reseal(t *testing.T, line []byte, prev string) (newLine []byte, hash string) {
	t.Helper()
	hashRe := regexp.MustCompile(`"hash":"[0-9a-f]{64}"`)
	loc := hashRe.FindIndex(line)
	if loc == nil {
		t.Fatalf("no hash member in %s", line)
	}
	// Remove the member with the comma before it (it never comes first: "decision" or "code" sort before it).
	c := append(append([]byte(nil), line[:loc[0]-1]...), line[loc[1]:]...)
	c = regexp.MustCompile(`"prev_hash":"[0-9a-f]{64}"`).ReplaceAll(c, []byte(`"prev_hash":"`+prev+`"`))
	p, err := hex.DecodeString(prev)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write([]byte("ztp-audit-v1\x00"))
	h.Write(p)
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(c))))
	h.Write(c)
	hash = hex.EncodeToString(h.Sum(nil))
	at := loc[0] - 1
	newLine = append(append(append([]byte(nil), c[:at]...), []byte(`,"hash":"`+hash+`"`)...), c[at:]...)
	if _, err := audit.VerifyLine(newLine); err != nil {
		t.Fatalf("resealed line does not verify on its own: %v\n%s", err, newLine)
	}
	return newLine, hash
}

// saveCheckpoint fetches a fresh checkpoint through the proxy and keeps it in
// a file, as a destination off the host would.
func saveCheckpoint(t *testing.T, env *proxytest.Env) (string, audit.Checkpoint) {
	t.Helper()
	signed, err := ztpctl(t, env, auditorID, "audit", "checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	cpFile := filepath.Join(t.TempDir(), "ckpt.txt")
	if err := os.WriteFile(cpFile, []byte(signed), 0o644); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(signed))
	if err != nil {
		t.Fatal(err)
	}
	return cpFile, cp
}

// TestAuditVerifyNeedsACheckpoint: the two attacks a bare hash chain
// cannot see — the tail cut with the stored head fixed (TestAuditOffline),
// and a record edited with every later hash recomputed — pass verify
// without a checkpoint, which says so plainly; with a checkpoint kept
// elsewhere both FAIL.
func TestAuditVerifyNeedsACheckpoint(t *testing.T) {
	env, pub := auditEnv(t)
	cpFile, cp := saveCheckpoint(t, env)
	if cp.Size < 4 {
		t.Fatalf("checkpoint %+v; want at least 4 records", cp)
	}

	// Edit record 2 (its time, so the line stays canonical) and recompute
	// the hash of it and of every later record, and the stored head.
	rewritten := copyAuditFile(t, env)
	tamper(t, rewritten, func(r, m *bolt.Bucket) error {
		var lines [][]byte
		for k, v := r.Cursor().First(); k != nil; k, v = r.Cursor().Seek(append(bytes.Clone(k), 0)) {
			lines = append(lines, bytes.Clone(v))
		}
		first, err := audit.ParseLine(lines[0])
		if err != nil {
			return err
		}
		i := bytes.Index(lines[1], []byte(`Z","type"`))
		if i < 0 {
			t.Fatalf("seq 2 has no time before its type: %s", lines[1])
		}
		lines[1][i-1] = '0' + (lines[1][i-1]-'0'+1)%10
		prev := first.Hash
		for n := 1; n < len(lines); n++ {
			var line []byte
			line, prev = reseal(t, lines[n], prev)
			if err := r.Put(binary.BigEndian.AppendUint64(nil, uint64(n+1)), line); err != nil {
				return err
			}
		}
		h, _ := hex.DecodeString(prev)
		return m.Put([]byte("head"), append(binary.BigEndian.AppendUint64(nil, uint64(len(lines))), h...))
	})
	out, _, err := runCtl(t, "", "audit", "verify", "--db", rewritten)
	if err != nil || !strings.HasPrefix(out, "ok: ") || !strings.Contains(out, "only that the log is internally consistent") {
		t.Errorf("audit verify --db (rewritten, no checkpoint) = %q, %v; want ok and the note that this proves only consistency", out, err)
	}
	out, _, err = runCtl(t, "", "audit", "verify", "--db", rewritten, "-o", "json")
	var rep verifyReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Scope != "internal_consistency" {
		t.Errorf("audit verify --db -o json (no checkpoint) = %q, %v; want scope internal_consistency", out, err)
	}
	out, _, err = runCtl(t, "", "audit", "verify", "--db", rewritten, "--checkpoint", cpFile, "--pubkey", pub)
	if err == nil || !strings.HasPrefix(out, "FAIL: seq ") || !strings.Contains(out, string(audit.FaultCheckpoint)) {
		t.Errorf("audit verify --db (rewritten) --checkpoint = %q, %v; want FAIL checkpoint_mismatch", out, err)
	}
	if strings.Contains(out, "only that the log is internally consistent") {
		t.Errorf("verify with a checkpoint printed the no-checkpoint note: %q", out)
	}
}

// TestAuditVerifyDamagedFile: a truncated file is a FAIL verdict naming
// the damage with exit status 3 (verify), a clean error (export), never a
// crash.
func TestAuditVerifyDamagedFile(t *testing.T) {
	env, _ := auditEnv(t)
	cut := copyAuditFile(t, env)
	if err := os.Truncate(cut, 8192); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCtl(t, "", "audit", "verify", "--db", cut)
	if err == nil || !strings.HasPrefix(out, "FAIL: ") || !strings.Contains(out, "truncated") || !strings.Contains(out, cut) || exitCode(err) != exitIntegrity {
		t.Errorf("audit verify --db (truncated) = %q, %v (exit %d); want FAIL naming the file and the truncation, exit %d", out, err, exitCode(err), exitIntegrity)
	}
	out, _, err = runCtl(t, "", "audit", "verify", "--db", cut, "-o", "json")
	var rep verifyReport
	if err == nil || json.Unmarshal([]byte(out), &rep) != nil || rep.OK || !rep.Unreadable || !strings.Contains(rep.BboltCheck, "truncated") {
		t.Errorf("audit verify --db -o json (truncated) = %q, %v", out, err)
	}
	if _, _, err := runCtl(t, "", "audit", "export", "--db", cut); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("audit export --db (truncated) = %v, want an error naming the truncation", err)
	}
	zeroed := copyAuditFile(t, env)
	b, _ := os.ReadFile(zeroed)
	clear(b[:8192]) // both meta pages
	os.WriteFile(zeroed, b, 0o600)
	if out, _, err := runCtl(t, "", "audit", "verify", "--db", zeroed); err == nil || !strings.Contains(out, "both meta pages are invalid") || exitCode(err) != exitIntegrity {
		t.Errorf("audit verify --db (meta pages zeroed) = %q, %v", out, err)
	}
}
