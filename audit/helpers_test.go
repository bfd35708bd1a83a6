package audit

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

// testCtx returns a context that ends before the test binary's own timeout
// would, so that a hung append fails the test instead of the run.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fixedClock returns a clock that advances one millisecond per call.
func fixedClock() func() time.Time {
	t := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Millisecond)
		return t
	}
}

// openTestStore opens a Store in a temporary directory. Cleanup closes it
// (if the test did not) and runs bbolt's consistency check on the file.
func openTestStore(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		checkFile(t, path)
	})
	return s, path
}

func checkFile(t testing.TB, path string) {
	t.Helper()
	r, err := OpenReader(path, 0)
	if err != nil {
		t.Errorf("OpenReader(%q) for check: %v", path, err)
		return
	}
	defer r.Close()
	if err := r.Check(); err != nil {
		t.Errorf("bbolt check of %s: %v", path, err)
	}
}

func requestRecord(i int) *Record {
	return &Record{
		Type:           TypeRequest,
		Principal:      &Principal{ID: "spiffe://example.org/ns/prod/sa/deployer", Kind: "automation", Groups: []string{"deployers"}, Authn: "mtls"},
		Peer:           "127.0.0.1:53312",
		Method:         "/etcdserverpb.KV/Put",
		Upstream:       "etcd",
		MessageIndex:   i,
		Request:        json.RawMessage(`{"key":"Zm9v","value":"YmFy"}`),
		RequestDecoded: true,
		Decision:       DecisionAllow,
		PolicyVersion:  "sha256:0123",
	}
}

func mustAppend(t testing.TB, s *Store, r *Record) uint64 {
	t.Helper()
	seq, err := s.Append(testCtx(t), r)
	if err != nil {
		t.Fatalf("Append(%+v) = %v", r, err)
	}
	return seq
}

// exportLines returns every stored line of the file at path.
func exportLines(t testing.TB, path string) [][]byte {
	t.Helper()
	r, err := OpenReader(path, 0)
	if err != nil {
		t.Fatalf("OpenReader: %v", err)
	}
	defer r.Close()
	var lines [][]byte
	if err := r.ScanLines(testCtx(t), 0, func(_ uint64, line []byte) error {
		lines = append(lines, line)
		return nil
	}); err != nil {
		t.Fatalf("ScanLines: %v", err)
	}
	return lines
}

// storeLines returns every stored line of an open Store.
func storeLines(t testing.TB, s *Store) [][]byte {
	t.Helper()
	var lines [][]byte
	if err := s.ScanLines(testCtx(t), 0, func(_ uint64, line []byte) error {
		lines = append(lines, line)
		return nil
	}); err != nil {
		t.Fatalf("ScanLines: %v", err)
	}
	return lines
}
