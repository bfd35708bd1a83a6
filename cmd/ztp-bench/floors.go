package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ztp-dev/ztp/audit"
)

// floors is what one durable audit record costs at least on the audit
// directory's filesystem, measured with nothing else running.
type floors struct {
	Dir        string `json:"dir"`
	Filesystem string `json:"filesystem"`
	Samples    int    `json:"samples"`
	// One 4 KiB overwrite plus fdatasync.
	FdatasyncP50US float64 `json:"fdatasync_4k_p50_us"`
	FdatasyncP99US float64 `json:"fdatasync_4k_p99_us"`
	// One bbolt db.Update adding a 354-byte value: bbolt syncs the data pages,
	// then the meta page.
	BboltCommitP50US float64 `json:"bbolt_commit_p50_us"`
	BboltCommitP99US float64 `json:"bbolt_commit_p99_us"`
	// One audit.Store.Append by a lone caller: encoding, hashing and a commit.
	AuditAppendP50US float64 `json:"audit_append_p50_us"`
	AuditAppendP99US float64 `json:"audit_append_p99_us"`
}

// measureFloors measures in a fresh subdirectory of dir and removes it.
func measureFloors(ctx context.Context, dir string, n int) (*floors, error) {
	d, err := os.MkdirTemp(dir, "floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(d)
	f := &floors{Dir: dir, Filesystem: fsType(dir), Samples: n}
	if f.FdatasyncP50US, f.FdatasyncP99US, err = timeOp(n, fsyncOnce(filepath.Join(d, "fsync"))); err != nil {
		return nil, fmt.Errorf("fdatasync: %w", err)
	}
	if f.BboltCommitP50US, f.BboltCommitP99US, err = timeOp(n, boltCommitOnce(filepath.Join(d, "bolt.db"))); err != nil {
		return nil, fmt.Errorf("bbolt commit: %w", err)
	}
	if f.AuditAppendP50US, f.AuditAppendP99US, err = timeOp(n, auditAppendOnce(ctx, filepath.Join(d, "audit.db"))); err != nil {
		return nil, fmt.Errorf("audit append: %w", err)
	}
	return f, nil
}

// timeOp prepares an operation, runs it n times and returns the p50 and p99
// of its duration in microseconds.
func timeOp(n int, prepare func() (op func() error, done func() error, err error)) (p50, p99 float64, err error) {
	op, done, err := prepare()
	if err != nil {
		return 0, 0, err
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := op(); err != nil {
			done()
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	if err := done(); err != nil {
		return 0, 0, err
	}
	slices.Sort(lat)
	return us(quantile(lat, 0.5)), us(quantile(lat, 0.99)), nil
}

func fsyncOnce(path string) func() (func() error, func() error, error) {
	return func() (func() error, func() error, error) {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, err
		}
		// Overwrite blocks of a file whose size is already durable, so that each
		// sync flushes data only, as a commit into bbolt's preallocated file does.
		const block, blocks = 4096, 16
		buf := make([]byte, block)
		if _, err := f.Write(make([]byte, block*blocks)); err != nil {
			f.Close()
			return nil, nil, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, nil, err
		}
		i := 0
		op := func() error {
			buf[0] = byte(i)
			if _, err := f.WriteAt(buf, int64(i%blocks)*block); err != nil {
				return err
			}
			i++
			return fdatasync(f)
		}
		return op, f.Close, nil
	}
}

func boltCommitOnce(path string) func() (func() error, func() error, error) {
	return func() (func() error, func() error, error) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			return nil, nil, err
		}
		bucket := []byte("records")
		value := make([]byte, 354) // the size of a typical audit record
		op := func() error {
			return db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(bucket)
				if err != nil {
					return err
				}
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				return b.Put(binary.BigEndian.AppendUint64(nil, seq), value)
			})
		}
		return op, db.Close, nil
	}
}

func auditAppendOnce(ctx context.Context, path string) func() (func() error, func() error, error) {
	return func() (func() error, func() error, error) {
		s, err := audit.Open(path, audit.Options{Redact: []string{"password", "*.secret"}})
		if err != nil {
			return nil, nil, err
		}
		// A request record like the ones the full path writes.
		req := json.RawMessage(`{"payload":{"body":"YmVuY2htYXJrIHBheWxvYWQgb2YgYSB0eXBpY2FsIGFkbWluIHJlcXVlc3Q="}}`)
		op := func() error {
			_, err := s.Append(ctx, &audit.Record{
				Type:           audit.TypeRequest,
				Principal:      &audit.Principal{ID: benchPrincipal, Kind: "automation", Groups: []string{"deployers"}, Authn: "mtls"},
				Peer:           "127.0.0.1:40000",
				Method:         "/grpc.testing.TestService/UnaryCall",
				Upstream:       "backend",
				Request:        req,
				RequestDecoded: true,
				Decision:       audit.DecisionAllow,
				PolicyVersion:  "sha256:0000000000000000000000000000000000000000000000000000000000000000",
			})
			return err
		}
		return op, s.Close, nil
	}
}

// us is d in microseconds.
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
