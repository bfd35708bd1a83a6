package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Reads copy a bounded chunk of records inside a short read transaction and
// call back outside it. A long-lived bbolt read transaction would block the
// writer whenever the file has to grow (remapping waits for readers), and a
// callback may be slow (an export streaming to a remote client).
const (
	chunkRecords = 256
	chunkBytes   = 4 << 20
)

// Reader is a read-only view of an audit log file, for export and
// verification when no Store holds it (a stopped proxy, or a copy). bbolt
// locks are advisory: a running proxy holds the file exclusively, so
// OpenReader waits and then fails with ErrLocked.
type Reader struct {
	path     string
	db       *bolt.DB
	warnings []string // damage bbolt tolerates, found when opening
}

// OpenReader opens the audit log at path read-only, waiting at most
// timeout (0: DefaultTimeout) for the file lock.
func OpenReader(path string, timeout time.Duration) (*Reader, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	db, st, err := openDB(path, timeout, true)
	if err != nil {
		return nil, err
	}
	if err := guard(path, func() error { return db.View(checkFormat) }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	return &Reader{path: path, db: db, warnings: st.warnings}, nil
}

// Close releases the file.
func (r *Reader) Close() error { return r.db.Close() }

// Check reports damage to the file's page structure: what OpenReader
// found and tolerated (an invalid meta page), then bbolt's consistency
// check (pages neither reachable nor free, keys out of order across pages).
func (r *Reader) Check() error {
	var errs []error
	for _, w := range r.warnings {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrDamaged, r.path, w))
	}
	if err := checkDB(r.db, r.path); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Scan calls fn for each record with Seq >= fromSeq, in seq order, using
// bounded memory. It does not verify hashes (Verify does); a stored value
// that does not decode, or whose seq differs from its key, stops the scan
// with ErrCorrupt. An error from fn stops the scan and is returned as is.
func (r *Reader) Scan(ctx context.Context, fromSeq uint64, fn func(*Record) error) error {
	return scanRecords(ctx, r.db, fromSeq, fn)
}

// ScanLines calls fn with each stored value (the exported JSON line, a
// copy fn may keep) for keys >= fromSeq, in key order, without decoding
// it: the forensic view of a damaged log.
func (r *Reader) ScanLines(ctx context.Context, fromSeq uint64, fn func(seq uint64, line []byte) error) error {
	return scanLines(ctx, r.db, fromSeq, fn)
}

// Verify walks the whole chain. See VerifyFile.
func (r *Reader) Verify(ctx context.Context) (VerifyResult, error) {
	return verifyDB(ctx, r.db, nil)
}

// VerifyExtends is Verify that also proves the log extends cp: record
// cp.Size exists with hash cp.Hash (FaultMissing if the log is shorter,
// FaultCheckpoint if that record differs). Check cp's signature first.
func (r *Reader) VerifyExtends(ctx context.Context, cp Checkpoint) (VerifyResult, error) {
	return verifyDB(ctx, r.db, &cp)
}

// ScanFile opens path read-only (DefaultTimeout for the lock), scans it
// like Reader.Scan and closes it.
func ScanFile(ctx context.Context, path string, fromSeq uint64, fn func(*Record) error) error {
	r, err := OpenReader(path, 0)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Scan(ctx, fromSeq, fn)
}

// VerifyFile opens path read-only and verifies the whole chain: every
// record decodes and is canonical, its hash matches its bytes, seqs run
// 1, 2, 3… with no gap, each prev_hash is its predecessor's hash, and the
// head kept in the meta bucket matches the last record. The result gives
// the count and head hash of the verified prefix; on the first problem the
// error is a *VerifyError (wrapping ErrChainBroken) naming the seq and the
// kind of damage, also in VerifyResult.Problem.
func VerifyFile(ctx context.Context, path string) (VerifyResult, error) {
	r, err := OpenReader(path, 0)
	if err != nil {
		return VerifyResult{}, err
	}
	defer r.Close()
	return r.Verify(ctx)
}

type rawRecord struct {
	key  []byte
	line []byte
}

// readChunk copies up to a chunk of records, starting at the first key >=
// from (or the very first key when first is true, so that malformed keys
// sorting before seq 1 are seen too). atEnd reports that the cursor ran
// out in this transaction; then head is the meta head read in it.
func readChunk(db *bolt.DB, from []byte, first bool) (recs []rawRecord, atEnd bool, head []byte, err error) {
	err = guard(db.Path(), func() error {
		return db.View(func(tx *bolt.Tx) error {
			if err := checkFormat(tx); err != nil {
				return err
			}
			c := tx.Bucket(bucketRecords).Cursor()
			var k, v []byte
			if first {
				k, v = c.First()
			} else {
				k, v = c.Seek(from)
			}
			size := 0
			for ; k != nil; k, v = c.Next() {
				if len(recs) == chunkRecords || size >= chunkBytes {
					return nil
				}
				recs = append(recs, rawRecord{key: bytes.Clone(k), line: bytes.Clone(v)})
				size += len(v)
			}
			atEnd = true
			head = bytes.Clone(tx.Bucket(bucketMeta).Get(keyHead))
			return nil
		})
	})
	return recs, atEnd, head, mapClosed(err)
}

// walk feeds every record with key >= from (all keys when from is 0) to
// fn, chunk by chunk, and calls end with the meta head once the records
// run out.
func walk(ctx context.Context, db *bolt.DB, from uint64, fn func(rawRecord) error, end func(head []byte) error) error {
	next, first := seqKey(from), from == 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, atEnd, head, err := readChunk(db, next, first)
		if err != nil {
			return err
		}
		for _, rr := range recs {
			if err := fn(rr); err != nil {
				return err
			}
		}
		if atEnd {
			if end != nil {
				return end(head)
			}
			return nil
		}
		// Resume just after the last key seen, whatever its length.
		next, first = append(recs[len(recs)-1].key, 0), false
	}
}

func scanLines(ctx context.Context, db *bolt.DB, from uint64, fn func(uint64, []byte) error) error {
	return walk(ctx, db, max(from, 1), func(rr rawRecord) error {
		seq, err := keySeq(rr.key)
		if err != nil {
			return err
		}
		return fn(seq, rr.line)
	}, nil)
}

func scanRecords(ctx context.Context, db *bolt.DB, from uint64, fn func(*Record) error) error {
	return scanLines(ctx, db, from, func(seq uint64, line []byte) error {
		r, err := ParseLine(line)
		if err != nil {
			return fmt.Errorf("seq %d: %w", seq, err)
		}
		if r.Seq != seq {
			return fmt.Errorf("%w: key %d holds record with seq %d", ErrCorrupt, seq, r.Seq)
		}
		return fn(r)
	})
}

func keySeq(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("%w: key %x is %d bytes, want 8", ErrCorrupt, k, len(k))
	}
	return binary.BigEndian.Uint64(k), nil
}

func verifyDB(ctx context.Context, db *bolt.DB, cp *Checkpoint) (VerifyResult, error) {
	v := NewChainVerifier()
	if cp != nil {
		v.ExpectCheckpoint(*cp)
	}
	err := walk(ctx, db, 0, func(rr rawRecord) error {
		if len(rr.key) != 8 {
			return v.fail(v.next, FaultMalformed, fmt.Sprintf("key %x is %d bytes, want 8", rr.key, len(rr.key)))
		}
		return v.add(binary.BigEndian.Uint64(rr.key), true, rr.line)
	}, func(head []byte) error {
		if err := v.checkHead(head); err != nil {
			return err
		}
		return v.Finish()
	})
	return v.Result(), err
}
