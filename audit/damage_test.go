package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A truncated or overwritten audit file must give a verdict — an error
// naming the damage, or a verification result — and never crash the
// process: bbolt maps the file and follows page ids without bounds checks,
// so a page past a truncated end is a SIGBUS and a garbage page id a read
// of unrelated memory. These tests damage a real log (made by Store) in
// the ways a disk, an operator or an attacker would, and run every reader
// of the file on it: OpenReader, Check, Verify, Export, LatestCheckpoint,
// and Open (the proxy's start) followed by an Append.

// damageRecords is enough records for a records bucket of several levels
// (branch pages) and a freelist with pages on it.
const damageRecords = 1500

// damageBase writes a real audit log with a signed checkpoint into dir.
func damageBase(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, "audit.db")
	s, err := Open(path, Options{Now: fixedClock()})
	if err != nil {
		tb.Fatal(err)
	}
	s.SignCheckpoints(NewSigner(testKey()))
	for i := range damageRecords {
		if _, err := s.Append(context.Background(), requestRecord(i)); err != nil {
			tb.Fatal(err)
		}
		if i%500 == 0 {
			if _, err := s.Checkpoint(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

const testPageSize = 4096

// pagesOf returns the ids of the pages of type flag that the file's tree
// reaches (a stale copy of a page on the freelist would prove nothing).
func pagesOf(tb testing.TB, path string, flag uint16) []int {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var ids []int
	if _, err := walkStructure(f, path, func(id uint64, fl uint16) {
		if fl == flag {
			ids = append(ids, int(id))
		}
	}); err != nil {
		tb.Fatal(err)
	}
	if len(ids) == 0 {
		tb.Fatalf("no page of type %#x in the test log", flag)
	}
	return ids
}

// verdict runs every reader of the file at path and returns what they
// said. A panic anywhere fails the test (a fault would kill the binary).
// It fails the test when a reader's error is not one that names damage.
func verdict(t *testing.T, path string) string {
	t.Helper()
	ctx := testCtx(t)
	var out []string
	r, err := OpenReader(path, time.Second)
	switch {
	case err != nil:
		if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrNotAuditLog) {
			t.Fatalf("OpenReader: %v, want ErrDamaged or ErrNotAuditLog", err)
		}
		out = append(out, "open: "+err.Error())
	default:
		if err := r.Check(); err != nil {
			out = append(out, "check: "+err.Error())
		}
		res, err := r.Verify(ctx)
		var verr *VerifyError
		switch {
		case errors.As(err, &verr):
			out = append(out, "verify: "+verr.Error())
		case err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrNotAuditLog):
			t.Fatalf("Verify: %v, want a VerifyError or ErrDamaged", err)
		case err != nil:
			out = append(out, "verify: "+err.Error())
		default:
			out = append(out, fmt.Sprintf("verify: ok, %d records", res.Records))
		}
		_ = r.Export(ctx, Filter{}, func(uint64, []byte) error { return nil })
		_, _ = r.LatestCheckpoint()
		r.Close()
	}
	// The proxy's start: Open refuses, or the store works (and appends).
	s, err := Open(path, Options{Timeout: time.Second})
	if err != nil {
		out = append(out, "serve: "+err.Error())
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Open error spans lines: %q", err)
		}
	} else {
		_, aerr := s.Append(ctx, requestRecord(0))
		_, _ = s.Verify(ctx)
		if cerr := s.Close(); aerr == nil && cerr != nil {
			aerr = cerr
		}
		if aerr != nil {
			out = append(out, "append: "+aerr.Error())
		}
	}
	return strings.Join(out, "\n")
}

func damageCopy(t *testing.T, base []byte, edit func([]byte) []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.db")
	if err := os.WriteFile(path, edit(append([]byte(nil), base...)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDamagedFile(t *testing.T) {
	basePath := damageBase(t, t.TempDir())
	base, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	hwm := int(binary.LittleEndian.Uint64(base[testPageSize+16+40:])) // meta page 1's high-water mark
	if h0 := int(binary.LittleEndian.Uint64(base[16+40:])); h0 > hwm {
		hwm = h0
	}
	zeroPage := func(id int) func([]byte) []byte {
		return func(b []byte) []byte { clear(b[id*testPageSize : (id+1)*testPageSize]); return b }
	}
	flip := func(id, off int) func([]byte) []byte {
		return func(b []byte) []byte { b[id*testPageSize+off] ^= 0xff; return b }
	}
	truncate := func(n int) func([]byte) []byte { return func(b []byte) []byte { return b[:n] } }
	type tc struct {
		name string
		edit func([]byte) []byte
		want string // in the verdict
	}
	cases := []tc{
		{"truncate to 0", truncate(0), "empty"},
		{"truncate to 65536", truncate(65536), "truncated"},
		{"truncate mid meta page", truncate(100), "meta"},
		{"zero meta page 0", zeroPage(0), "meta page 0 is invalid"},
		{"zero meta page 1", zeroPage(1), "meta page 1 is invalid"},
		{"zero both meta pages", func(b []byte) []byte { return zeroPage(1)(zeroPage(0)(b)) }, "both meta pages are invalid"},
	}
	for id := 2; id <= hwm; id += 7 {
		cases = append(cases,
			tc{fmt.Sprintf("truncate at page %d", id), truncate(id * testPageSize), "truncated"},
			tc{fmt.Sprintf("truncate in page %d", id), truncate(id*testPageSize + 1000), "truncated"})
	}
	for i, id := range pagesOf(t, basePath, branchPageFlag) {
		cases = append(cases,
			tc{fmt.Sprintf("branch page %d: child id", id), flip(id, pageHeaderSize+8+i%4), ""},
			tc{fmt.Sprintf("branch page %d: element offset", id), flip(id, pageHeaderSize+1), ""},
			tc{fmt.Sprintf("branch page %d: count", id), flip(id, 10), ""},
			tc{fmt.Sprintf("branch page %d: zeroed", id), zeroPage(id), "page"})
	}
	leaves := pagesOf(t, basePath, leafPageFlag)
	for _, id := range []int{leaves[0], leaves[len(leaves)/2], leaves[len(leaves)-1]} {
		cases = append(cases,
			tc{fmt.Sprintf("leaf page %d: header id", id), flip(id, 0), "calls itself"},
			tc{fmt.Sprintf("leaf page %d: type", id), flip(id, 8), "type"},
			tc{fmt.Sprintf("leaf page %d: count", id), flip(id, 11), ""},
			tc{fmt.Sprintf("leaf page %d: element value size", id), flip(id, pageHeaderSize+14), ""},
			tc{fmt.Sprintf("leaf page %d: element flags", id), flip(id, pageHeaderSize), ""},
			tc{fmt.Sprintf("leaf page %d: a value byte", id), flip(id, 2000), ""},
			tc{fmt.Sprintf("leaf page %d: zeroed", id), zeroPage(id), "page"})
	}
	for _, id := range pagesOf(t, basePath, freelistPageFlag) {
		cases = append(cases,
			tc{fmt.Sprintf("freelist page %d: count", id), flip(id, 10), ""},
			tc{fmt.Sprintf("freelist page %d: an id", id), flip(id, pageHeaderSize+5), ""},
			tc{fmt.Sprintf("freelist page %d: zeroed", id), zeroPage(id), "freelist"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := verdict(t, damageCopy(t, base, c.edit))
			t.Log(got)
			if !strings.Contains(got, c.want) {
				t.Errorf("verdict:\n%s\nwant it to mention %q", got, c.want)
			}
			if c.want != "" && strings.Contains(got, "verify: ok") && !strings.Contains(got, "check: ") {
				t.Errorf("verdict:\n%s\nwant the damage reported", got)
			}
		})
	}
}

// FuzzDamagedFile truncates the real log at a random size, or overwrites
// a random byte, or zeroes a random page: whatever results, every reader
// answers without a panic or a fault.
func FuzzDamagedFile(f *testing.F) {
	base, err := os.ReadFile(damageBase(f, f.TempDir()))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), uint32(65536), uint8(0))
	f.Add(uint8(0), uint32(4096*5+17), uint8(0))
	f.Add(uint8(1), uint32(16+40), uint8(0x7f)) // meta 0's high-water mark
	f.Add(uint8(1), uint32(4096*3+24), uint8(0xff))
	f.Add(uint8(2), uint32(0), uint8(0))
	f.Add(uint8(2), uint32(1), uint8(0))
	f.Add(uint8(2), uint32(3), uint8(0))
	f.Fuzz(func(t *testing.T, op uint8, at uint32, val uint8) {
		path := damageCopy(t, base, func(b []byte) []byte {
			switch op % 3 {
			case 0:
				return b[:int(at)%len(b)]
			case 1:
				b[int(at)%len(b)] ^= val | 1
			default:
				n := len(b) / testPageSize
				id := int(at) % n
				clear(b[id*testPageSize : (id+1)*testPageSize])
			}
			return b
		})
		_ = verdict(t, path)
	})
}

// TestFileShrinksUnderReader truncates the file while a Reader and a Store
// have it mapped: the reads fault (SIGBUS past the new end), and the
// process gets an error instead of dying.
func TestFileShrinksUnderReader(t *testing.T) {
	path := damageBase(t, t.TempDir())
	r, err := OpenReader(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.Truncate(path, 64<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Verify(testCtx(t)); !errors.Is(err, ErrDamaged) {
		t.Errorf("Reader.Verify of a file cut under it = %v, want ErrDamaged", err)
	}
}

func TestFileShrinksUnderStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range damageRecords {
		mustAppend(t, s, requestRecord(i))
	}
	if err := os.Truncate(path, 64<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(testCtx(t)); !errors.Is(err, ErrDamaged) {
		t.Errorf("Store.Verify of a file cut under it = %v, want ErrDamaged", err)
	}
	// The writer faults on the cut pages and the store fails closed from
	// then on: no record is acknowledged that the file does not hold.
	for i := range 3 {
		if _, err := s.Append(testCtx(t), requestRecord(i)); !errors.Is(err, ErrWrite) || !errors.Is(err, ErrDamaged) {
			t.Errorf("Append %d after the cut = %v, want ErrWrite and ErrDamaged", i, err)
		}
	}
	if err := s.Ping(testCtx(t)); !errors.Is(err, ErrDamaged) {
		t.Errorf("Ping after the cut = %v, want ErrDamaged (readiness fails)", err)
	}
	// bbolt's rollback faulted too and holds its write lock: Close must
	// return instead of waiting for it.
	if err := s.Close(); !errors.Is(err, ErrDamaged) {
		t.Errorf("Close after the cut = %v, want ErrDamaged", err)
	}
}
