package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Checkpoint format. A checkpoint is a signed note (the format of
// golang.org/x/mod/sumdb/note): a text of four lines, a blank line, and one
// or more signature lines:
//
//	ztp-audit-checkpoint/v1
//	size 1234
//	hash 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	time 2026-11-26T10:00:00.000000000Z
//
//	— ztp-audit Hx2n0ZS4…(base64)
//
// size is the number of records covered (seq 1 … size), hash the hash of
// record size as exported (64 zeros for size 0), time when the proxy signed.
// The signature line is "— " (U+2014 and a space), the key name
// "ztp-audit", a space, and base64 (standard, padded) of the 4-byte key id
// followed by the 64-byte Ed25519 signature of the text: every byte of the
// four lines including their newlines. The key id is the first 4 bytes of
// SHA-256("ztp-audit" || "\n" || 0x01 || public key), big-endian. With
// [VerifierKey]'s string, note.Open from golang.org/x/mod verifies it too.
const (
	checkpointOrigin = "ztp-audit-checkpoint/v1"
	// KeyName is the signer name in checkpoint signature lines.
	KeyName = "ztp-audit"
	// algEd25519 is the signed-note algorithm byte for Ed25519.
	algEd25519 = 1
	// maxCheckpointBytes bounds what ParseCheckpoint reads: a checkpoint is
	// about 250 bytes; anything far larger is not one.
	maxCheckpointBytes = 16 << 10
)

var keyCheckpoint = []byte("checkpoint") // meta bucket: the latest signed checkpoint

// Checkpoint is a signed statement of the chain head: the log had Size
// records and record Size had hash Hash at Time. Kept off the host, it lets
// anyone holding the public key prove that a later log still contains
// those records unchanged — what a bare hash chain cannot show when its
// tail is cut off.
type Checkpoint struct {
	Size uint64    `json:"size"`
	Hash string    `json:"hash"` // hex, as the record's exported "hash"
	Time time.Time `json:"time"` // UTC
	// Signed is the signed note this checkpoint was parsed from or signed
	// into; Sign ignores it.
	Signed []byte `json:"-"`
}

// Signer signs checkpoints with an Ed25519 key.
type Signer struct {
	priv ed25519.PrivateKey
	id   uint32
}

// NewSigner returns a Signer for priv.
func NewSigner(priv ed25519.PrivateKey) *Signer {
	return &Signer{priv: priv, id: keyID(priv.Public().(ed25519.PublicKey))}
}

// LoadSigner reads an Ed25519 private key in PEM-encoded PKCS#8 (what
// GenerateKey and `openssl genpkey -algorithm ed25519` write).
func LoadSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	priv, err := parsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, path, err)
	}
	return NewSigner(priv), nil
}

// Public returns the public key that verifies this signer's checkpoints.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Sign returns c as a signed note. c.Hash must be 64 lower-case hex digits.
func (s *Signer) Sign(c Checkpoint) (Checkpoint, error) {
	if _, err := parseHex([]byte(c.Hash)); err != nil || len(c.Hash) != 64 {
		return Checkpoint{}, fmt.Errorf("%w: hash %q is not 64 hex digits", ErrBadCheckpoint, c.Hash)
	}
	c.Time = c.Time.UTC()
	if y := c.Time.Year(); y < 0 || y > 9999 {
		return Checkpoint{}, fmt.Errorf("%w: time %v outside years 0000-9999", ErrBadCheckpoint, c.Time)
	}
	text := checkpointText(c)
	sig := binary.BigEndian.AppendUint32(make([]byte, 0, 68), s.id)
	sig = append(sig, ed25519.Sign(s.priv, text)...)
	c.Signed = fmt.Appendf(text, "\n— %s %s\n", KeyName, base64.StdEncoding.EncodeToString(sig))
	return c, nil
}

func checkpointText(c Checkpoint) []byte {
	return fmt.Appendf(nil, "%s\nsize %d\nhash %s\ntime %s\n", checkpointOrigin, c.Size, c.Hash, c.Time.UTC().Format(timeLayout))
}

// keyID is the signed-note key hash of an Ed25519 key named KeyName.
func keyID(pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(KeyName + "\n"))
	h.Write([]byte{algEd25519})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// KeyID names a public key in checkpoint signatures: 8 hex digits.
func KeyID(pub ed25519.PublicKey) string { return fmt.Sprintf("%08x", keyID(pub)) }

// VerifierKey returns pub in the signed-note verifier key form
// ("ztp-audit+<key id>+<base64 of 0x01 || key>"), for auditors who verify
// checkpoints with golang.org/x/mod/sumdb/note instead of ztpctl.
func VerifierKey(pub ed25519.PublicKey) string {
	return fmt.Sprintf("%s+%08x+%s", KeyName, keyID(pub), base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, pub...)))
}

// ParseCheckpoint parses a signed checkpoint WITHOUT checking its
// signature: for code that only needs size and hash and leaves trust to its
// caller (the proxy's Verify, which answers "does the log extend this?").
// Use OpenCheckpoint to check the signature.
func ParseCheckpoint(signed []byte) (Checkpoint, error) {
	c, _, _, err := parseNote(signed)
	return c, err
}

// OpenCheckpoint parses a signed checkpoint and verifies its signature by
// pub. It fails with ErrBadCheckpoint when the text is malformed or no
// signature line of pub verifies.
func OpenCheckpoint(signed []byte, pub ed25519.PublicKey) (Checkpoint, error) {
	c, text, sigs, err := parseNote(signed)
	if err != nil {
		return Checkpoint{}, err
	}
	if len(pub) != ed25519.PublicKeySize {
		return Checkpoint{}, fmt.Errorf("%w: public key is %d bytes, want %d", ErrKey, len(pub), ed25519.PublicKeySize)
	}
	id := keyID(pub)
	for _, s := range sigs {
		if s.name == KeyName && s.id == id {
			if ed25519.Verify(pub, text, s.sig) {
				return c, nil
			}
			return Checkpoint{}, fmt.Errorf("%w: signature by key %08x does not verify: the checkpoint was altered", ErrBadCheckpoint, id)
		}
	}
	return Checkpoint{}, fmt.Errorf("%w: not signed by key %08x (signed by %s)", ErrBadCheckpoint, id, signerList(sigs))
}

type noteSig struct {
	name string
	id   uint32
	sig  []byte
}

func signerList(sigs []noteSig) string {
	l := make([]string, len(sigs))
	for i, s := range sigs {
		l[i] = fmt.Sprintf("%s %08x", s.name, s.id)
	}
	return strings.Join(l, ", ")
}

// parseNote splits and checks a signed checkpoint: the exact text format,
// then well-formed signature lines (at least one).
func parseNote(signed []byte) (c Checkpoint, text []byte, sigs []noteSig, err error) {
	bad := func(format string, args ...any) (Checkpoint, []byte, []noteSig, error) {
		return Checkpoint{}, nil, nil, fmt.Errorf("%w: %s", ErrBadCheckpoint, fmt.Sprintf(format, args...))
	}
	if len(signed) > maxCheckpointBytes {
		return bad("%d bytes; a checkpoint is far smaller", len(signed))
	}
	if !utf8.Valid(signed) {
		return bad("not UTF-8")
	}
	split := bytes.LastIndex(signed, []byte("\n\n"))
	if split < 0 {
		return bad("no blank line before the signatures")
	}
	text, rest := signed[:split+1], signed[split+2:]
	lines := strings.Split(string(text), "\n")
	if len(lines) != 5 || lines[0] != checkpointOrigin {
		return bad("text must be 4 lines starting with %q", checkpointOrigin)
	}
	size, ok := strings.CutPrefix(lines[1], "size ")
	if c.Size, err = strconv.ParseUint(size, 10, 64); !ok || err != nil || strconv.FormatUint(c.Size, 10) != size {
		return bad("line 2 %q is not \"size <decimal>\"", lines[1])
	}
	hash, ok := strings.CutPrefix(lines[2], "hash ")
	if _, herr := parseHex([]byte(hash)); !ok || herr != nil || len(hash) != 64 {
		return bad("line 3 %q is not \"hash <64 lower-case hex digits>\"", lines[2])
	}
	c.Hash = hash
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if c.Time, err = time.Parse(timeLayout, ts); !ok || err != nil || c.Time.Format(timeLayout) != ts {
		return bad("line 4 %q is not \"time %s\"", lines[3], timeLayout)
	}
	if c.Size == 0 && hash != zeroHash {
		return bad("size 0 with a hash other than 64 zeros")
	}
	if len(rest) == 0 || rest[len(rest)-1] != '\n' {
		return bad("signature lines must end with a newline")
	}
	for _, l := range strings.Split(string(rest[:len(rest)-1]), "\n") {
		body, ok := strings.CutPrefix(l, "— ")
		name, b64, ok2 := strings.Cut(body, " ")
		if !ok || !ok2 || name == "" || strings.ContainsAny(name, "+ ") {
			return bad("malformed signature line %q", l)
		}
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(raw) < 5 {
			return bad("malformed signature in line %q", l)
		}
		sigs = append(sigs, noteSig{name: name, id: binary.BigEndian.Uint32(raw), sig: raw[4:]})
	}
	c.Signed = bytes.Clone(signed)
	return c, text, sigs, nil
}

const zeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// GenerateKey creates an Ed25519 key pair for audit.signing_key: the
// private key as PEM PKCS#8, the public key as PEM PKIX ("PUBLIC KEY").
func GenerateKey(random io.Reader) (privPEM, pubPEM []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	pkix, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), nil
}

// ParsePublicKey reads the Ed25519 public key that checks checkpoints from
// PEM: a "PUBLIC KEY" block, or the "PRIVATE KEY" (PKCS#8) of
// audit.signing_key itself, whose public half is derived.
func ParsePublicKey(pemBytes []byte) (ed25519.PublicKey, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrKey)
	}
	switch b.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: %T is not an Ed25519 public key", ErrKey, k)
		}
		return pub, nil
	case "PRIVATE KEY":
		priv, err := parsePrivateKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, err)
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("%w: PEM block %q, want PUBLIC KEY or PRIVATE KEY", ErrKey, b.Type)
}

func parsePrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New(`no "PRIVATE KEY" (PKCS#8) PEM block`)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an Ed25519 private key", k)
	}
	return priv, nil
}

// SignCheckpoints makes the store sign checkpoints with sig: Checkpoint
// uses it, and Close signs the final head.
func (s *Store) SignCheckpoints(sig *Signer) { s.signer.Store(sig) }

// OnCheckpoint makes the store call f with every checkpoint it signs, once
// the checkpoint is stored, the final one of Close included (a Shipper's
// Ship). f runs under the checkpoint lock and must not block.
func (s *Store) OnCheckpoint(f func(Checkpoint)) { s.onCheckpoint.Store(&f) }

// Checkpoint signs the current head with the store's signer and keeps it
// as the latest checkpoint (in the meta bucket), unless the latest already
// covers the head. It returns the latest checkpoint.
//
// It refuses (ErrChainBroken) to sign a head that does not extend the
// previous checkpoint — a log cut back or rewritten under the proxy — so
// the proxy never vouches for a rollback. An empty log has nothing to sign
// (ErrNoCheckpoint).
func (s *Store) Checkpoint() (Checkpoint, error) {
	if err := s.readable(); err != nil {
		return Checkpoint{}, err
	}
	c, _, err := s.checkpoint()
	return c, err
}

// checkpoint does Checkpoint's work; signed reports a new signature.
func (s *Store) checkpoint() (c Checkpoint, signed bool, err error) {
	sig := s.signer.Load()
	if sig == nil {
		return Checkpoint{}, false, ErrNoSigner
	}
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	head := s.head.Load()
	prev, err := latestCheckpoint(s.db)
	switch {
	case errors.Is(err, ErrNoCheckpoint):
		if head.seq == 0 {
			return Checkpoint{}, false, err
		}
	case err != nil:
		return Checkpoint{}, false, err
	case prev.Size == head.seq && prev.Hash == hexString(head.hash):
		return prev, false, nil
	default:
		if err := extendsCheckpoint(s.db, prev, head); err != nil {
			return Checkpoint{}, false, err
		}
	}
	c, err = sig.Sign(Checkpoint{Size: head.seq, Hash: hexString(head.hash), Time: s.now()})
	if err != nil {
		return Checkpoint{}, false, err
	}
	err = s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCheckpoint, c.Signed) })
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("%w: %s: checkpoint: %w", ErrWrite, s.path, mapClosed(err))
	}
	if f := s.onCheckpoint.Load(); f != nil {
		(*f)(c)
	}
	return c, true, nil
}

// RunCheckpoints signs a checkpoint at every tick (when the head moved)
// until ctx ends or the store closes; the caller owns the ticker, so tests
// drive it without waiting. Errors other than an empty log go to onError
// (nil: dropped): a refusal to sign a rolled-back log is one of them.
func (s *Store) RunCheckpoints(ctx context.Context, tick <-chan time.Time, onError func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-tick:
			_, err := s.Checkpoint()
			switch {
			case err == nil, errors.Is(err, ErrNoCheckpoint):
			case errors.Is(err, ErrClosed):
				return
			case onError != nil:
				onError(err)
			}
		}
	}
}

// extendsCheckpoint checks that the chain up to head contains the
// checkpointed record unchanged. It reads one record: the chain between it
// and head is the writer's own work, and Verify checks the rest.
func extendsCheckpoint(db *bolt.DB, prev Checkpoint, head *chainHead) error {
	if prev.Size > head.seq {
		return &VerifyError{Seq: head.seq + 1, Fault: FaultMissing, Detail: fmt.Sprintf("log ends at seq %d, but checkpoint covers %d records (truncated or rolled back)", head.seq, prev.Size)}
	}
	if prev.Size == 0 {
		return nil
	}
	var line []byte
	err := guard(db.Path(), func() error {
		return db.View(func(tx *bolt.Tx) error {
			line = bytes.Clone(tx.Bucket(bucketRecords).Get(seqKey(prev.Size)))
			return nil
		})
	})
	if err != nil {
		return mapClosed(err)
	}
	if line == nil {
		return &VerifyError{Seq: prev.Size, Fault: FaultMissing, Detail: "the checkpointed record is gone"}
	}
	if _, h, err := splitLine(line); err != nil || hexString(h) != prev.Hash {
		return &VerifyError{Seq: prev.Size, Fault: FaultCheckpoint, Detail: fmt.Sprintf("record differs from checkpoint hash %s", prev.Hash)}
	}
	return nil
}

// LatestCheckpoint returns the latest checkpoint the store signed
// (ErrNoCheckpoint if none).
func (s *Store) LatestCheckpoint() (Checkpoint, error) {
	if err := s.readable(); err != nil {
		return Checkpoint{}, err
	}
	return latestCheckpoint(s.db)
}

// LatestCheckpoint returns the latest checkpoint stored in the file
// (ErrNoCheckpoint if none).
func (r *Reader) LatestCheckpoint() (Checkpoint, error) { return latestCheckpoint(r.db) }

func latestCheckpoint(db *bolt.DB) (Checkpoint, error) {
	var b []byte
	err := guard(db.Path(), func() error {
		return db.View(func(tx *bolt.Tx) error {
			b = bytes.Clone(tx.Bucket(bucketMeta).Get(keyCheckpoint))
			return nil
		})
	})
	if err != nil {
		return Checkpoint{}, mapClosed(err)
	}
	if b == nil {
		return Checkpoint{}, ErrNoCheckpoint
	}
	return ParseCheckpoint(b)
}
