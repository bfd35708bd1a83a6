package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

const tamperRecords = 6

// buildLog writes tamperRecords records to a closed file and returns its
// path. Record 3 has method "/etcdserverpb.KV/Put".
func buildLog(t *testing.T) string {
	t.Helper()
	s, path := openTestStore(t, Options{Now: fixedClock()})
	for i := range tamperRecords {
		mustAppend(t, s, requestRecord(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// mutate opens the bbolt file directly, as an attacker with file access
// would, and applies fn.
func mutate(t *testing.T, path string, fn func(records, meta *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return fn(tx.Bucket(bucketRecords), tx.Bucket(bucketMeta))
	}); err != nil {
		t.Fatalf("tampering: %v", err)
	}
}

func get(b *bolt.Bucket, seq uint64) []byte { return bytes.Clone(b.Get(seqKey(seq))) }

// resealed returns record seq's line edited by edit, with its hash
// recomputed: the work of an attacker who knows the format.
func resealed(t *testing.T, line []byte, edit func(string) string) []byte {
	t.Helper()
	canon, _, err := splitLine(line)
	if err != nil {
		t.Fatal(err)
	}
	c := edit(string(canon))
	l, verr := sealCanonical(c)
	if verr != nil {
		t.Fatal(verr)
	}
	return l
}

// sealCanonical hashes canonical bytes c with its own prev_hash and
// inserts the hash member, as the writer would.
func sealCanonical(c string) ([]byte, error) {
	var f struct {
		PrevHash string `json:"prev_hash"`
	}
	if err := json.Unmarshal([]byte(c), &f); err != nil {
		return nil, err
	}
	prev, err := parseHex([]byte(f.PrevHash))
	if err != nil {
		return nil, err
	}
	h := chainHash(prev, []byte(c))
	at := strings.Index(c, `"justification"`)
	for _, k := range []string{`"message_index"`, `"messages_in"`, `"metadata"`, `"method"`} {
		if at < 0 {
			at = strings.Index(c, k)
		}
	}
	return insertHash([]byte(c), at-1, false, h), nil
}

func TestTamperDetected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, records, meta *bolt.Bucket) error
		seq    uint64
		fault  Fault
	}{
		{"edit a value", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Put(seqKey(3), bytes.Replace(get(r, 3), []byte("KV/Put"), []byte("KV/Pat"), 1))
		}, 3, FaultHash},
		{"edit the hash", func(t *testing.T, r, _ *bolt.Bucket) error {
			v := get(r, 3)
			i := bytes.Index(v, hashMarker) + len(hashMarker)
			v[i] = "01"[v[i]&1] // another hex digit
			return r.Put(seqKey(3), v)
		}, 3, FaultHash},
		{"break the JSON", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Put(seqKey(3), append(get(r, 3), ' '))
		}, 3, FaultMalformed},
		{"re-encode non-canonically with a valid hash", func(t *testing.T, r, _ *bolt.Bucket) error {
			v := resealed(t, get(r, 3), func(c string) string { return strings.Replace(c, `"seq":3`, `"seq": 3`, 1) })
			return r.Put(seqKey(3), v)
		}, 3, FaultMalformed},
		{"delete a record", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Delete(seqKey(3))
		}, 3, FaultMissing},
		{"delete the first record", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Delete(seqKey(1))
		}, 1, FaultMissing},
		{"truncate the tail", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Delete(seqKey(tamperRecords))
		}, tamperRecords, FaultMissing},
		{"swap two values", func(t *testing.T, r, _ *bolt.Bucket) error {
			a, b := get(r, 3), get(r, 4)
			if err := r.Put(seqKey(3), b); err != nil {
				return err
			}
			return r.Put(seqKey(4), a)
		}, 3, FaultOrder},
		{"move a record to another key", func(t *testing.T, r, _ *bolt.Bucket) error {
			v := get(r, tamperRecords)
			if err := r.Delete(seqKey(tamperRecords)); err != nil {
				return err
			}
			return r.Put(seqKey(tamperRecords+5), v)
		}, tamperRecords, FaultMissing},
		{"edit and rehash one record", func(t *testing.T, r, _ *bolt.Bucket) error {
			v := resealed(t, get(r, 3), func(c string) string { return strings.Replace(c, "KV/Put", "KV/Pat", 1) })
			return r.Put(seqKey(3), v)
		}, 4, FaultLink},
		{"replace with a valid record of another chain", func(t *testing.T, r, _ *bolt.Bucket) error {
			other := buildOtherLog(t)
			return r.Put(seqKey(3), other[2])
		}, 3, FaultLink},
		{"rewrite the meta head", func(t *testing.T, _, m *bolt.Bucket) error {
			v := bytes.Clone(m.Get(keyHead))
			v[39] ^= 1
			return m.Put(keyHead, v)
		}, tamperRecords, FaultHead},
		{"delete the meta head", func(t *testing.T, _, m *bolt.Bucket) error {
			return m.Delete(keyHead)
		}, tamperRecords, FaultHead},
		{"append an unchained record", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Put(seqKey(tamperRecords+1), get(r, tamperRecords))
		}, tamperRecords + 1, FaultOrder},
		{"insert a short key", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Put([]byte{0, 0, 0}, get(r, 1))
		}, 1, FaultMalformed},
		{"insert a long key between records", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Put(append(seqKey(2), 0), get(r, 3))
		}, 3, FaultMalformed},
		{"record zero", func(t *testing.T, r, _ *bolt.Bucket) error {
			return r.Put(seqKey(0), get(r, 1))
		}, 1, FaultOrder},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := buildLog(t)
			mutate(t, path, func(r, m *bolt.Bucket) error { return tc.tamper(t, r, m) })
			res, err := VerifyFile(testCtx(t), path)
			var verr *VerifyError
			if !errors.As(err, &verr) || !errors.Is(err, ErrChainBroken) {
				t.Fatalf("VerifyFile after %s = %+v, %v; want a *VerifyError", tc.name, res, err)
			}
			if verr.Seq != tc.seq || verr.Fault != tc.fault {
				t.Errorf("VerifyFile after %s: fault %s at seq %d (%s); want %s at seq %d", tc.name, verr.Fault, verr.Seq, verr.Detail, tc.fault, tc.seq)
			}
			if res.Problem != verr || res.OK() {
				t.Errorf("result %+v does not carry the error", res)
			}
			if res.Records != res.HeadSeq || res.Records > tc.seq {
				t.Errorf("result reports %d good records up to seq %d; the first bad one is %d", res.Records, res.HeadSeq, tc.seq)
			}
			// A damaged log still opens for appending, nothing stored is
			// overwritten, and Verify keeps reporting the damage (a record
			// appended after a rewritten head no longer links, so the fault
			// may move to the new record). A deleted meta head loses no
			// record and is rebuilt from the last one.
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatalf("Open of a damaged log = %v; want it opened", err)
			}
			defer s.Close()
			before := countValues(t, s)
			mustAppend(t, s, requestRecord(0))
			if after := countValues(t, s); after != before+1 {
				t.Errorf("append to damaged log: %d stored values, then %d; want one more", before, after)
			}
			_, err = s.Verify(testCtx(t))
			if tc.name == "delete the meta head" {
				if err != nil {
					t.Errorf("Verify after rebuilding the head = %v, want nil", err)
				}
				return
			}
			if !errors.As(err, &verr) || verr.Seq < tc.seq || verr.Seq > tc.seq+1 {
				t.Errorf("Verify after append = %v; want a fault at seq %d (or the appended %d)", err, tc.seq, tc.seq+1)
			}
		})
	}
}

// buildOtherLog returns the lines of a second, independent chain.
func buildOtherLog(t *testing.T) [][]byte {
	s, err := Open(filepath.Join(t.TempDir(), "other.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustAppend(t, s, requestRecord(i+100))
	}
	lines := storeLines(t, s)
	s.Close()
	return lines
}

// TestTamperEveryByte flips each byte of one record in turn: every
// single-byte edit must be reported at that record.
func TestTamperEveryByte(t *testing.T) {
	path := buildLog(t)
	var orig []byte
	mutate(t, path, func(r, _ *bolt.Bucket) error { orig = get(r, 3); return nil })
	for i := range orig {
		for _, bit := range []byte{0x01, 0x20, 0x80} {
			v := bytes.Clone(orig)
			v[i] ^= bit
			mutate(t, path, func(r, _ *bolt.Bucket) error { return r.Put(seqKey(3), v) })
			_, err := VerifyFile(testCtx(t), path)
			var verr *VerifyError
			if !errors.As(err, &verr) || verr.Seq != 3 || (verr.Fault != FaultHash && verr.Fault != FaultMalformed) {
				t.Fatalf("byte %d ^ %#x (%q): VerifyFile = %v; want hash_mismatch or malformed at seq 3", i, bit, v, err)
			}
		}
	}
}

func TestChainVerifierStream(t *testing.T) {
	lines := exportLines(t, buildLog(t))
	drop := func(i int) [][]byte { return append(append([][]byte{}, lines[:i]...), lines[i+1:]...) }
	swap := func(i int) [][]byte {
		l := append([][]byte{}, lines...)
		l[i], l[i+1] = l[i+1], l[i]
		return l
	}
	for _, tc := range []struct {
		name  string
		lines [][]byte
		seq   uint64
		fault Fault
	}{
		{"intact", lines, 0, ""},
		{"dropped line", drop(2), 3, FaultMissing},
		{"swapped lines", swap(2), 3, FaultMissing},
		{"repeated line", append(append([][]byte{}, lines[:3]...), lines[2:]...), 4, FaultOrder},
		{"starts mid-chain", lines[2:], 1, FaultMissing},
		{"edited line", append(append([][]byte{}, lines[:2]...), bytes.Replace(lines[2], []byte("Put"), []byte("Pat"), 1)), 3, FaultHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewChainVerifier()
			var err error
			for _, l := range tc.lines {
				if err = v.Add(l); err != nil {
					break
				}
			}
			res := v.Result()
			if tc.fault == "" {
				if err != nil || res.Records != uint64(len(tc.lines)) || !res.OK() {
					t.Fatalf("verify intact export = %+v, %v", res, err)
				}
				return
			}
			var verr *VerifyError
			if !errors.As(err, &verr) || verr.Seq != tc.seq || verr.Fault != tc.fault {
				t.Fatalf("verify %s = %v; want %s at seq %d", tc.name, err, tc.fault, tc.seq)
			}
			if again := v.Add(lines[0]); again != err {
				t.Errorf("Add after failure = %v, want the first error %v", again, err)
			}
		})
	}
}

func TestVerifyLine(t *testing.T) {
	lines := exportLines(t, buildLog(t))
	r, err := VerifyLine(lines[2])
	if err != nil || r.Seq != 3 || r.Method != "/etcdserverpb.KV/Put" {
		t.Fatalf("VerifyLine(line 3) = %+v, %v", r, err)
	}
	if _, err := VerifyLine(bytes.Replace(lines[2], []byte("Put"), []byte("Pat"), 1)); !errors.Is(err, ErrChainBroken) {
		t.Errorf("VerifyLine(edited) = %v, want ErrChainBroken", err)
	}
}

func TestVerifyEmptyLog(t *testing.T) {
	s, path := openTestStore(t, Options{})
	s.Close()
	res, err := VerifyFile(testCtx(t), path)
	if err != nil || res.Records != 0 || res.HeadHash != strings.Repeat("0", 64) {
		t.Errorf("VerifyFile(empty) = %+v, %v; want 0 records and the zero hash", res, err)
	}
}

func countValues(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketRecords).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
