package audit

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// The tamper requirement, exhaustively: flipping any byte of any
// stored record, deleting any record, swapping any two, or truncating the
// tail by any amount (with a checkpoint) is detected in 100% of cases, at
// the right seq.

func wantFault(t *testing.T, what string, res VerifyResult, err error, seq uint64, faults ...Fault) {
	t.Helper()
	var verr *VerifyError
	if !errors.As(err, &verr) || verr.Seq != seq || !slices.Contains(faults, verr.Fault) {
		t.Fatalf("%s: verify = %+v, %v; want %v at seq %d", what, res, err, faults, seq)
	}
}

// TestTamperAnyByteOfAnyRecord flips every byte of every stored record
// (the low bit or the high bit, alternately; TestTamperEveryByte flips
// three bits of each byte of one record), verifying the file through the
// same path as VerifyFile after each edit.
func TestTamperAnyByteOfAnyRecord(t *testing.T) {
	path := buildLog(t)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.NoSync = true // the attacker's handle: durability of the edits is beside the point
	put := func(seq uint64, v []byte) {
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRecords).Put(seqKey(seq), v) }); err != nil {
			t.Fatal(err)
		}
	}
	cases := 0
	for seq := uint64(1); seq <= tamperRecords; seq++ {
		var orig []byte
		db.View(func(tx *bolt.Tx) error { orig = get(tx.Bucket(bucketRecords), seq); return nil })
		for i := range orig {
			v := bytes.Clone(orig)
			v[i] ^= []byte{0x01, 0x80}[i%2]
			put(seq, v)
			res, err := verifyDB(testCtx(t), db, nil)
			wantFault(t, "flip", res, err, seq, FaultHash, FaultMalformed)
			cases++
		}
		put(seq, orig)
	}
	if res, err := verifyDB(testCtx(t), db, nil); err != nil {
		t.Fatalf("restored log: %+v, %v", res, err)
	}
	t.Logf("%d single-byte edits of %d records: all detected", cases, tamperRecords)
}

func TestTamperDeleteAnyRecord(t *testing.T) {
	orig := buildLog(t)
	for seq := uint64(1); seq <= tamperRecords; seq++ {
		path := copyFile(t, orig)
		mutate(t, path, func(r, _ *bolt.Bucket) error { return r.Delete(seqKey(seq)) })
		res, err := VerifyFile(testCtx(t), path)
		wantFault(t, "delete", res, err, seq, FaultMissing)
	}
}

func TestTamperSwapAnyTwoRecords(t *testing.T) {
	orig := buildLog(t)
	for i := uint64(1); i <= tamperRecords; i++ {
		for j := i + 1; j <= tamperRecords; j++ {
			path := copyFile(t, orig)
			mutate(t, path, func(r, _ *bolt.Bucket) error {
				a, b := get(r, i), get(r, j)
				if err := r.Put(seqKey(i), b); err != nil {
					return err
				}
				return r.Put(seqKey(j), a)
			})
			res, err := VerifyFile(testCtx(t), path)
			wantFault(t, "swap", res, err, i, FaultOrder)
		}
	}
}

// TestTamperTruncateTailWithCheckpoint cuts the tail by every amount and
// makes the rest consistent (the meta head rewritten): the chain alone
// still verifies — the limit of a hash chain — but the log no longer
// extends the checkpoint signed before the cut.
func TestTamperTruncateTailWithCheckpoint(t *testing.T) {
	s, orig := signingStore(t, fixedClock())
	for i := range tamperRecords {
		mustAppend(t, s, requestRecord(i))
	}
	if err := s.Close(); err != nil { // signs the final checkpoint
		t.Fatal(err)
	}
	r, err := OpenReader(orig, 0)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := r.LatestCheckpoint()
	r.Close()
	if err != nil || cp.Size != tamperRecords {
		t.Fatalf("final checkpoint = %+v, %v", cp, err)
	}
	for keep := uint64(0); keep < tamperRecords; keep++ {
		path := copyFile(t, orig)
		truncateTo(t, path, keep)
		r, err := OpenReader(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := r.Verify(testCtx(t)); err != nil || res.Records != keep {
			t.Errorf("keep %d: the chain alone = %+v, %v; want it to verify %d records", keep, res, err, keep)
		}
		res, err := r.VerifyExtends(testCtx(t), cp)
		r.Close()
		wantFault(t, "truncate", res, err, keep+1, FaultMissing)
	}
}
