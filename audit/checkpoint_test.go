package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testKey is the Ed25519 key with seed 0x01, 0x02, … 0x20.
func testKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// Known answer for the checkpoint format, produced by an independent
// implementation of signed notes: golang.org/x/mod/sumdb/note v0.41.0,
//
//	vkey, _ := note.NewEd25519VerifierKey("ztp-audit", testKey().Public())
//	signer, _ := note.NewSigner("PRIVATE+KEY+ztp-audit+1a802997+" + base64(0x01 || seed))
//	note.Sign(&note.Note{Text: katCheckpointText}, signer)
//
// and checked with note.Open(msg, note.VerifierList(verifier(vkey))).
const (
	katVerifierKey    = "ztp-audit+1a802997+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk"
	katCheckpointText = "ztp-audit-checkpoint/v1\nsize 2\nhash " + kat2Hash + "\ntime 2026-11-26T10:00:00.000000000Z\n"
	katCheckpoint     = katCheckpointText + "\n— ztp-audit GoAplyEW/Mi0+7ahKG8IGwffCZp6Om1pi/66W9GOsUt4uHXqKIr8kD43R94nQDtCtPaMaBJMAwIdWtQiMgWIJlVUHQw=\n"
)

func TestCheckpointKnownAnswer(t *testing.T) {
	s := NewSigner(testKey())
	if got := VerifierKey(s.Public()); got != katVerifierKey {
		t.Errorf("VerifierKey = %s, want %s", got, katVerifierKey)
	}
	cp := Checkpoint{Size: 2, Hash: kat2Hash, Time: time.Date(2026, 11, 26, 11, 0, 0, 0, time.FixedZone("CET", 3600))}
	c, err := s.Sign(cp)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Signed) != katCheckpoint {
		t.Errorf("Sign(%+v) =\n%s\nwant\n%s", cp, c.Signed, katCheckpoint)
	}
	got, err := OpenCheckpoint([]byte(katCheckpoint), s.Public())
	if err != nil || got.Size != 2 || got.Hash != kat2Hash || !got.Time.Equal(cp.Time) || string(got.Signed) != katCheckpoint {
		t.Errorf("OpenCheckpoint(known answer) = %+v, %v; want size 2, hash %s, time %v", got, err, kat2Hash, cp.Time)
	}
}

func TestOpenCheckpointRejects(t *testing.T) {
	pub := testKey().Public().(ed25519.PublicKey)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	sigLine := katCheckpoint[len(katCheckpointText)+1:]
	// resign puts the known answer's signature under an edited text.
	resign := func(text string) string { return text + "\n" + sigLine }
	for _, tc := range []struct {
		name, note string
		pub        ed25519.PublicKey
		parses     bool // ParseCheckpoint (no signature check) accepts it
	}{
		{"other key", katCheckpoint, other, true},
		{"size changed", resign(strings.Replace(katCheckpointText, "size 2", "size 3", 1)), pub, true},
		{"hash changed", resign(strings.Replace(katCheckpointText, "hash d6", "hash d7", 1)), pub, true},
		{"time changed", resign(strings.Replace(katCheckpointText, "10:00:00", "10:00:01", 1)), pub, true},
		{"no signature", katCheckpointText + "\n", pub, false},
		{"no blank line", katCheckpointText + sigLine, pub, false},
		{"extra text line", resign(katCheckpointText + "extra\n"), pub, false},
		{"origin changed", resign(strings.Replace(katCheckpointText, "/v1", "/v2", 1)), pub, false},
		{"size with leading zero", resign(strings.Replace(katCheckpointText, "size 2", "size 02", 1)), pub, false},
		{"upper-case hash", resign(strings.Replace(katCheckpointText, kat2Hash, strings.ToUpper(kat2Hash), 1)), pub, false},
		{"short hash", resign(strings.Replace(katCheckpointText, kat2Hash, kat2Hash[:62], 1)), pub, false},
		{"time not in UTC layout", resign(strings.Replace(katCheckpointText, ".000000000Z", "Z", 1)), pub, false},
		{"size 0 with a hash", resign(strings.Replace(katCheckpointText, "size 2", "size 0", 1)), pub, false},
		{"signature not base64", katCheckpointText + "\n— ztp-audit !!!\n", pub, false},
		{"signature without newline", strings.TrimSuffix(katCheckpoint, "\n"), pub, false},
		{"not UTF-8", resign(strings.Replace(katCheckpointText, "size", "s\xffze", 1)), pub, false},
		{"huge", katCheckpoint + strings.Repeat("— ztp-audit AAAAAAAA\n", 2000), pub, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := OpenCheckpoint([]byte(tc.note), tc.pub); !errors.Is(err, ErrBadCheckpoint) {
				t.Errorf("OpenCheckpoint(%q) = %v, want ErrBadCheckpoint", tc.note, err)
			}
			_, err := ParseCheckpoint([]byte(tc.note))
			if (err == nil) != tc.parses {
				t.Errorf("ParseCheckpoint(%q) = %v, want parses=%v", tc.note, err, tc.parses)
			}
		})
	}
}

// TestCheckpointTamperEveryByte flips each byte of a signed checkpoint:
// none still opens.
func TestCheckpointTamperEveryByte(t *testing.T) {
	pub := testKey().Public().(ed25519.PublicKey)
	for i := range len(katCheckpoint) {
		for _, bit := range []byte{0x01, 0x20, 0x80} {
			b := []byte(katCheckpoint)
			b[i] ^= bit
			if c, err := OpenCheckpoint(b, pub); err == nil {
				t.Fatalf("byte %d ^ %#x: OpenCheckpoint(%q) = %+v, want an error", i, bit, b, c)
			}
		}
	}
}

func TestKeys(t *testing.T) {
	privPEM, pubPEM, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(keyFile)
	if err != nil {
		t.Fatalf("LoadSigner(generated key) = %v", err)
	}
	for name, p := range map[string][]byte{"public PEM": pubPEM, "private PEM": privPEM} {
		pub, err := ParsePublicKey(p)
		if err != nil || !pub.Equal(s.Public()) {
			t.Errorf("ParsePublicKey(%s) = %x, %v; want %x", name, pub, err, s.Public())
		}
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	for _, tc := range []struct {
		name string
		pem  []byte
	}{
		{"not PEM", []byte("hello")},
		{"ECDSA private key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})},
		{"ECDSA public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPub})},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParsePublicKey(tc.pem); !errors.Is(err, ErrKey) {
				t.Errorf("ParsePublicKey(%s) = %v, want ErrKey", tc.name, err)
			}
			f := filepath.Join(t.TempDir(), "k.pem")
			os.WriteFile(f, tc.pem, 0o600)
			if _, err := LoadSigner(f); !errors.Is(err, ErrKey) {
				t.Errorf("LoadSigner(%s) = %v, want ErrKey", tc.name, err)
			}
		})
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing.pem")); !errors.Is(err, ErrKey) {
		t.Errorf("LoadSigner(missing file) = %v, want ErrKey", err)
	}
}

// signingStore opens a store that signs checkpoints with testKey.
func signingStore(t *testing.T, clock func() time.Time) (*Store, string) {
	t.Helper()
	s, path := openTestStore(t, Options{Now: clock})
	s.SignCheckpoints(NewSigner(testKey()))
	return s, path
}

func TestStoreCheckpoint(t *testing.T) {
	s, path := signingStore(t, fixedClock())
	pub := testKey().Public().(ed25519.PublicKey)
	if _, err := s.Checkpoint(); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("Checkpoint of an empty log = %v, want ErrNoCheckpoint", err)
	}
	for i := range 3 {
		mustAppend(t, s, requestRecord(i))
	}
	c1, err := s.Checkpoint()
	seq, hash := s.Head()
	if err != nil || c1.Size != seq || c1.Hash != hash {
		t.Fatalf("Checkpoint = %+v, %v; want size %d hash %s", c1, err, seq, hash)
	}
	if _, err := OpenCheckpoint(c1.Signed, pub); err != nil {
		t.Errorf("OpenCheckpoint(store's checkpoint) = %v", err)
	}
	// The head did not move: the same checkpoint, not a new signature.
	again, err := s.Checkpoint()
	if err != nil || !bytes.Equal(again.Signed, c1.Signed) {
		t.Errorf("Checkpoint with an unmoved head = %q, %v; want the previous %q", again.Signed, err, c1.Signed)
	}
	mustAppend(t, s, requestRecord(3))
	c2, err := s.Checkpoint()
	if err != nil || c2.Size != 4 || !c2.Time.After(c1.Time) {
		t.Errorf("Checkpoint after an append = %+v, %v; want size 4, later than %v", c2, err, c1.Time)
	}
	if latest, err := s.LatestCheckpoint(); err != nil || !bytes.Equal(latest.Signed, c2.Signed) {
		t.Errorf("LatestCheckpoint = %q, %v; want %q", latest.Signed, err, c2.Signed)
	}
	// Close signs the final head, covering the last record.
	mustAppend(t, s, requestRecord(4))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	final, err := r.LatestCheckpoint()
	if err != nil || final.Size != 5 {
		t.Fatalf("Reader.LatestCheckpoint after Close = %+v, %v; want size 5", final, err)
	}
	if res, err := r.VerifyExtends(testCtx(t), final); err != nil || res.Records != 5 {
		t.Errorf("VerifyExtends(final checkpoint) = %+v, %v", res, err)
	}
}

func TestCheckpointWithoutSigner(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	mustAppend(t, s, requestRecord(0))
	if _, err := s.Checkpoint(); !errors.Is(err, ErrNoSigner) {
		t.Errorf("Checkpoint without signer = %v, want ErrNoSigner", err)
	}
	if _, err := s.LatestCheckpoint(); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("LatestCheckpoint without signer = %v, want ErrNoCheckpoint", err)
	}
	s.Close()
	if _, err := s.Checkpoint(); !errors.Is(err, ErrClosed) {
		t.Errorf("Checkpoint after Close = %v, want ErrClosed", err)
	}
}

// copyFile returns a copy of the file at path in a new temporary directory.
func copyFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// truncateTo deletes every record after seq keep and rewrites the meta head
// to match: an attacker with file access who knows the format. The chain
// alone still verifies afterwards.
func truncateTo(t *testing.T, path string, keep uint64) {
	t.Helper()
	mutate(t, path, func(r, m *bolt.Bucket) error {
		for seq := keep + 1; r.Get(seqKey(seq)) != nil; seq++ {
			if err := r.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		head := seqKey(keep)
		if keep == 0 {
			head = append(head, make([]byte, 32)...)
		} else {
			_, h, err := splitLine(r.Get(seqKey(keep)))
			if err != nil {
				return err
			}
			head = append(head, h[:]...)
		}
		return m.Put(keyHead, head)
	})
}

// TestCheckpointRefusesRollback: the proxy does not sign a log that no
// longer extends its previous checkpoint.
func TestCheckpointRefusesRollback(t *testing.T) {
	for _, tc := range []struct {
		name   string
		regrow int // records appended after the truncation
		fault  Fault
	}{
		{"truncated", 0, FaultMissing},
		{"truncated and regrown past the checkpoint", 4, FaultCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, path := signingStore(t, fixedClock())
			for i := range 5 {
				mustAppend(t, s, requestRecord(i))
			}
			if _, err := s.Checkpoint(); err != nil {
				t.Fatal(err)
			}
			s.SignCheckpoints(nil) // no final checkpoint at Close
			s.Close()
			truncateTo(t, path, 3)
			s2, err := Open(path, Options{Now: fixedClock()})
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			s2.SignCheckpoints(NewSigner(testKey()))
			for i := range tc.regrow {
				mustAppend(t, s2, requestRecord(100+i))
			}
			_, err = s2.Checkpoint()
			var verr *VerifyError
			if !errors.As(err, &verr) || !errors.Is(err, ErrChainBroken) || verr.Fault != tc.fault {
				t.Fatalf("Checkpoint after %s = %v; want a %s VerifyError", tc.name, err, tc.fault)
			}
			s2.SignCheckpoints(nil)
		})
	}
}

// TestRunCheckpoints drives the checkpoint loop with its own tick channel.
// An unbuffered send returns only when the loop took the tick, so a second
// send proves the first tick's checkpoint is done.
func TestRunCheckpoints(t *testing.T) {
	s, _ := signingStore(t, fixedClock())
	tick := make(chan time.Time)
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunCheckpoints(ctx, tick, func(err error) { errs <- err })
	}()
	tickTwice := func() { tick <- time.Time{}; tick <- time.Time{} }

	tickTwice() // empty log: nothing to sign, not an error
	if _, err := s.LatestCheckpoint(); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("LatestCheckpoint after ticks on an empty log = %v, want ErrNoCheckpoint", err)
	}
	mustAppend(t, s, requestRecord(0))
	mustAppend(t, s, requestRecord(1))
	tickTwice()
	if c, err := s.LatestCheckpoint(); err != nil || c.Size != 2 {
		t.Errorf("LatestCheckpoint after a tick = %+v, %v; want size 2", c, err)
	}
	select {
	case err := <-errs:
		t.Errorf("onError(%v) on a healthy log", err)
	default:
	}
	cancel()
	<-done

	// The loop also ends when the store closes.
	done = make(chan struct{})
	go func() {
		defer close(done)
		s.RunCheckpoints(testCtx(t), tick, nil)
	}()
	s.Close()
	<-done
}

func TestChainVerifierCheckpoint(t *testing.T) {
	s, _ := signingStore(t, fixedClock())
	for i := range 5 {
		mustAppend(t, s, requestRecord(i))
	}
	lines := storeLines(t, s)
	_, h3, _ := splitLine(lines[2])
	cp := Checkpoint{Size: 3, Hash: hexString(h3)}
	other := Checkpoint{Size: 3, Hash: strings.Repeat("ab", 32)}
	for _, tc := range []struct {
		name  string
		cp    Checkpoint
		n     int // lines fed
		seq   uint64
		fault Fault
	}{
		{"extends", cp, 5, 0, ""},
		{"ends at the checkpoint", cp, 3, 0, ""},
		{"empty checkpoint", Checkpoint{Hash: zeroHash}, 0, 0, ""},
		{"ends before the checkpoint", cp, 2, 3, FaultMissing},
		{"forked", other, 5, 3, FaultCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewChainVerifier()
			v.ExpectCheckpoint(tc.cp)
			for _, l := range lines[:tc.n] {
				v.Add(l)
			}
			err := v.Finish()
			if tc.fault == "" {
				if err != nil {
					t.Errorf("Finish = %v, want nil", err)
				}
				return
			}
			var verr *VerifyError
			if !errors.As(err, &verr) || verr.Seq != tc.seq || verr.Fault != tc.fault {
				t.Errorf("Finish = %v, want %s at seq %d", err, tc.fault, tc.seq)
			}
		})
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte(katCheckpoint))
	f.Add([]byte(katCheckpointText + "\n— a AAAAAAA=\n— b AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"))
	f.Add([]byte("ztp-audit-checkpoint/v1\nsize 0\nhash " + zeroHash + "\ntime 0000-01-01T00:00:00.000000000Z\n\n— x AAAAAAA=\n"))
	pub := testKey().Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err != nil {
			if !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("ParseCheckpoint error %v does not wrap ErrBadCheckpoint", err)
			}
			return
		}
		// One spelling per checkpoint: the text re-renders byte for byte.
		if text := checkpointText(c); !bytes.HasPrefix(b, text) || b[len(text)] != '\n' {
			t.Fatalf("ParseCheckpoint(%q) = %+v, which renders as %q", b, c, text)
		}
		// testKey signed only the known answer's text: any other text
		// that opens would be a forgery.
		if _, err := OpenCheckpoint(b, pub); err == nil && !bytes.HasPrefix(b, []byte(katCheckpointText+"\n")) {
			t.Fatalf("OpenCheckpoint(%q) verified", b)
		}
	})
}
