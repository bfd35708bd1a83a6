package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

func TestAppendScanRoundTrip(t *testing.T) {
	s, _ := openTestStore(t, Options{Now: fixedClock()})
	in := []*Record{
		requestRecord(0),
		{Type: TypeRequest, Method: "/x.Y/Z", MessageIndex: 3, Request: json.RawMessage(`null`), Decision: DecisionDeny, Reasons: []string{"b", "a"}},
		{Type: TypeOutcome, Ref: 1, Code: "OK", DurationMS: 0, MessagesIn: 0, MessagesOut: 0},
		{Type: TypeBreakglass, BreakglassGrant: "bg-1", Justification: "j", Ticket: "INC-1", Principal: &Principal{ID: "u"}},
		{Type: TypePolicy, Detail: "loaded", PolicyVersion: "sha256:ff"},
		{Type: TypeSystem, Detail: "started", Metadata: map[string][]string{"b": {"2", "1"}, "a": nil}},
		{Type: TypeRequest, Time: time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("X", -7200)), Decision: DecisionDryrunDeny},
	}
	for i, r := range in {
		if seq := mustAppend(t, s, r); seq != uint64(i+1) {
			t.Fatalf("Append #%d = seq %d, want %d", i, seq, i+1)
		}
		if r.Time.Location() != time.UTC || r.PrevHash == "" || len(r.Hash) != 64 {
			t.Fatalf("Append #%d left Time %v, PrevHash %q, Hash %q", i, r.Time, r.PrevHash, r.Hash)
		}
	}
	var got []*Record
	if err := s.Scan(testCtx(t), 0, func(r *Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatalf("Scan = %v", err)
	}
	if len(got) != len(in) {
		t.Fatalf("Scan returned %d records, want %d", len(got), len(in))
	}
	for i := range in {
		want := normalized(in[i])
		if string(want.Request) == "null" {
			want.Request = nil
		}
		if g := normalized(got[i]); !reflect.DeepEqual(g, want) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i+1, g, want)
		}
	}
	// Encoding rules that Scan's zero values hide.
	lines := storeLines(t, s)
	for _, tc := range []struct {
		seq     int
		has     []string
		hasNot  []string
		comment string
	}{
		{1, []string{`"message_index":0`, `"request_decoded":true`}, []string{`"duration_ms":`, `"messages_in":`}, "request record"},
		{2, []string{`"request_decoded":false`}, []string{`"request":`}, "null request is absent"},
		{3, []string{`"duration_ms":0`, `"messages_in":0`, `"messages_out":0`}, []string{`"message_index":`, `"request_decoded":`}, "outcome record"},
		{4, []string{`"principal":{"authn":"","groups":[],"id":"u","kind":""}`}, nil, "principal always complete"},
		{6, []string{`"metadata":{"a":[],"b":["2","1"]}`}, nil, "metadata sorted by key, values in order"},
		{7, []string{`"time":"2030-01-02T05:04:05.000000006Z"`}, nil, "caller's time in UTC"},
	} {
		line := string(lines[tc.seq-1])
		for _, h := range tc.has {
			if !strings.Contains(line, h) {
				t.Errorf("%s: line %s lacks %s", tc.comment, line, h)
			}
		}
		for _, h := range tc.hasNot {
			if strings.Contains(line, h) {
				t.Errorf("%s: line %s has %s", tc.comment, line, h)
			}
		}
	}
	if res, err := s.Verify(testCtx(t)); err != nil || res.Records != uint64(len(in)) {
		t.Errorf("Verify = %+v, %v; want %d records", res, err, len(in))
	}
}

// normalized maps the encodings' equivalent forms onto one for comparing.
func normalized(r *Record) Record {
	c := *r
	c.Time = c.Time.UTC()
	if c.Principal != nil {
		p := *c.Principal
		if p.Groups == nil {
			p.Groups = []string{}
		}
		c.Principal = &p
	}
	if c.Metadata != nil {
		md := map[string][]string{}
		for k, v := range c.Metadata {
			if v == nil {
				v = []string{}
			}
			md[k] = v
		}
		c.Metadata = md
	}
	return c
}

func TestInvalidRecords(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	for _, tc := range []struct {
		name string
		r    *Record
	}{
		{"nil", nil},
		{"no type", &Record{}},
		{"unknown type", &Record{Type: "audit"}},
		{"unknown decision", &Record{Type: TypeRequest, Decision: "maybe"}},
		{"request not JSON", &Record{Type: TypeRequest, Request: json.RawMessage(`{"a":`)}},
		{"request two values", &Record{Type: TypeRequest, Request: json.RawMessage(`{} {}`)}},
		{"request duplicate key", &Record{Type: TypeRequest, Request: json.RawMessage(`{"a":1,"a":2}`)}},
		{"NaN duration", &Record{Type: TypeOutcome, DurationMS: nan()}},
		{"year 10000", &Record{Type: TypeSystem, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"invalid metadata key", &Record{Type: TypeSystem, Metadata: map[string][]string{"\xff": nil}}},
		{"request_truncated from the caller", &Record{Type: TypeRequest, RequestTruncated: `{"a":`}},
		{"request_sha256 not hex", &Record{Type: TypeRequest, RequestSHA256: strings.Repeat("G", 64)}},
		{"request_sha256 upper case", &Record{Type: TypeRequest, RequestSHA256: strings.Repeat("A", 64)}},
		{"request_sha256 short", &Record{Type: TypeRequest, RequestSHA256: "abcd"}},
		{"request_bytes without request_sha256", &Record{Type: TypeRequest, RequestBytes: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if seq, err := s.Append(testCtx(t), tc.r); !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("Append(%+v) = %d, %v; want ErrInvalidRecord", tc.r, seq, err)
			}
		})
	}
	if seq, _ := s.Head(); seq != 0 {
		t.Errorf("Head seq = %d after only invalid appends, want 0", seq)
	}
}

func nan() float64 { var z float64; return z / z }

func TestConcurrentAppendsContiguous(t *testing.T) {
	const workers, each = 64, 25
	var commits []int
	var mu sync.Mutex
	s, _ := openTestStore(t, Options{hooks: &testHooks{beforeCommit: func(n int) error {
		mu.Lock()
		commits = append(commits, n)
		mu.Unlock()
		return nil
	}}})
	ctx := testCtx(t)
	seqs := make(chan uint64, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := requestRecord(i)
				r.Peer = fmt.Sprintf("worker-%d", w)
				seq, err := s.Append(ctx, r)
				if err != nil {
					t.Errorf("worker %d: Append = %v", w, err)
					return
				}
				if r.Seq != seq {
					t.Errorf("worker %d: r.Seq = %d, returned %d", w, r.Seq, seq)
				}
				seqs <- seq
			}
		})
	}
	wg.Wait()
	close(seqs)
	got := slices.Sorted(func(yield func(uint64) bool) {
		for s := range seqs {
			if !yield(s) {
				return
			}
		}
	})
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("sorted seqs[%d] = %d, want %d (seqs not contiguous and unique)", i, seq, i+1)
		}
	}
	if len(got) != workers*each {
		t.Fatalf("got %d seqs, want %d", len(got), workers*each)
	}
	res, err := s.Verify(ctx)
	if err != nil || res.Records != workers*each {
		t.Fatalf("Verify = %+v, %v; want %d records", res, err, workers*each)
	}
	if seq, hash := s.Head(); seq != res.HeadSeq || hash != res.HeadHash {
		t.Errorf("Head() = %d, %s; Verify says %d, %s", seq, hash, res.HeadSeq, res.HeadHash)
	}
	t.Logf("%d records in %d commits", workers*each, len(commits))
}

// blockingHooks stops the writer inside its first commit until release is
// closed, and reports each hand-off on enqueued.
type blockingHooks struct {
	entered  chan struct{} // closed when the first commit is in progress
	release  chan struct{}
	enqueued chan struct{}
	closing  chan struct{}
	batches  []int
	failNext func(batch int) error
	once     sync.Once
	mu       sync.Mutex
}

func newBlockingHooks() *blockingHooks {
	return &blockingHooks{entered: make(chan struct{}), release: make(chan struct{}), enqueued: make(chan struct{}, 1024), closing: make(chan struct{})}
}

func (b *blockingHooks) hooks() *testHooks {
	return &testHooks{
		enqueued: func() { b.enqueued <- struct{}{} },
		closing:  func() { close(b.closing) },
		beforeCommit: func(n int) error {
			b.once.Do(func() {
				close(b.entered)
				<-b.release
			})
			b.mu.Lock()
			defer b.mu.Unlock()
			b.batches = append(b.batches, n)
			if b.failNext != nil {
				return b.failNext(n)
			}
			return nil
		},
	}
}

// appendAsync starts n appends and returns their results in a channel.
type appendResult struct {
	seq uint64
	err error
}

func appendAsync(ctx context.Context, s *Store, n int) <-chan appendResult {
	out := make(chan appendResult, n)
	for i := range n {
		go func() {
			seq, err := s.Append(ctx, requestRecord(i))
			out <- appendResult{seq, err}
		}()
	}
	return out
}

func TestGroupCommitBatches(t *testing.T) {
	b := newBlockingHooks()
	s, _ := openTestStore(t, Options{MaxBatch: 4, hooks: b.hooks()})
	ctx := testCtx(t)
	first := appendAsync(ctx, s, 1)
	<-b.enqueued
	<-b.entered // the writer is committing record 1 alone
	rest := appendAsync(ctx, s, 4)
	for range 4 {
		<-b.enqueued // all four are queued behind the blocked commit
	}
	close(b.release)
	if r := <-first; r.err != nil || r.seq != 1 {
		t.Fatalf("first Append = %d, %v; want 1, nil", r.seq, r.err)
	}
	for range 4 {
		if r := <-rest; r.err != nil {
			t.Fatalf("Append = %v", r.err)
		}
	}
	if want := []int{1, 4}; !slices.Equal(b.batches, want) {
		t.Errorf("commit batch sizes = %v, want %v (queued records share one commit)", b.batches, want)
	}
}

func TestMaxBatchBoundsCommits(t *testing.T) {
	b := newBlockingHooks()
	s, _ := openTestStore(t, Options{MaxBatch: 2, hooks: b.hooks()})
	ctx := testCtx(t)
	first := appendAsync(ctx, s, 1)
	<-b.enqueued
	<-b.entered
	rest := appendAsync(ctx, s, 2) // fills the queue (capacity MaxBatch)
	<-b.enqueued
	<-b.enqueued
	close(b.release)
	<-first
	for range 2 {
		<-rest
	}
	more := appendAsync(ctx, s, 3)
	for range 3 {
		if r := <-more; r.err != nil {
			t.Fatalf("Append = %v", r.err)
		}
	}
	for _, n := range b.batches {
		if n > 2 {
			t.Errorf("commit of %d records with MaxBatch 2 (batches %v)", n, b.batches)
		}
	}
	if seq, _ := s.Head(); seq != 6 {
		t.Errorf("Head seq = %d, want 6", seq)
	}
}

func TestCommitFailure(t *testing.T) {
	b := newBlockingHooks()
	injected := errors.New("injected disk failure")
	s, _ := openTestStore(t, Options{hooks: b.hooks()})
	ctx := testCtx(t)
	first := appendAsync(ctx, s, 1)
	<-b.enqueued
	<-b.entered
	failing := appendAsync(ctx, s, 3)
	for range 3 {
		<-b.enqueued
	}
	b.mu.Lock()
	b.failNext = func(n int) error {
		if n == 3 {
			return injected
		}
		return nil
	}
	b.mu.Unlock()
	close(b.release)
	if r := <-first; r.err != nil {
		t.Fatalf("first Append = %v", r.err)
	}
	seq1, hash1 := s.Head()
	for range 3 {
		r := <-failing
		if !errors.Is(r.err, ErrWrite) || !errors.Is(r.err, injected) || r.seq != 0 {
			t.Errorf("Append in failed batch = %d, %v; want 0 and ErrWrite wrapping %v", r.seq, r.err, injected)
		}
	}
	if seq, hash := s.Head(); seq != seq1 || hash != hash1 {
		t.Errorf("Head() after failed commit = %d, %s; want unchanged %d, %s", seq, hash, seq1, hash1)
	}
	// The next record chains from the last committed one.
	r := requestRecord(9)
	if seq := mustAppend(t, s, r); seq != seq1+1 || r.PrevHash != hash1 {
		t.Errorf("Append after failure = seq %d prev %s; want %d, %s", seq, r.PrevHash, seq1+1, hash1)
	}
	if res, err := s.Verify(ctx); err != nil || res.Records != 2 {
		t.Errorf("Verify = %+v, %v; want 2 records", res, err)
	}
}

// TestCommitFailureDatabaseGone pulls the bbolt file out from under the
// writer: the append fails closed instead of being lost silently.
func TestCommitFailureDatabaseGone(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	mustAppend(t, s, requestRecord(0))
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	seq, err := s.Append(testCtx(t), requestRecord(1))
	if !errors.Is(err, ErrWrite) || !errors.Is(err, berrors.ErrDatabaseNotOpen) {
		t.Fatalf("Append on closed db = %d, %v; want ErrWrite wrapping ErrDatabaseNotOpen", seq, err)
	}
	if !strings.Contains(err.Error(), s.path) {
		t.Errorf("error %q does not name the file", err)
	}
	if head, _ := s.Head(); head != 1 {
		t.Errorf("Head seq = %d, want 1", head)
	}
	if err := s.Ping(testCtx(t)); !errors.Is(err, ErrWrite) {
		t.Errorf("Ping on closed db = %v, want ErrWrite", err)
	}
}

func TestClose(t *testing.T) {
	s, path := openTestStore(t, Options{})
	mustAppend(t, s, requestRecord(0))
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	ctx := testCtx(t)
	if _, err := s.Append(ctx, requestRecord(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	for name, err := range map[string]error{
		"Scan":   s.Scan(ctx, 0, func(*Record) error { return nil }),
		"Check":  s.Check(),
		"Ping":   s.Ping(ctx),
		"Verify": func() error { _, err := s.Verify(ctx); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if res, err := VerifyFile(ctx, path); err != nil || res.Records != 1 {
		t.Errorf("VerifyFile after Close = %+v, %v; want 1 record", res, err)
	}
}

func TestCloseDrainsQueue(t *testing.T) {
	b := newBlockingHooks()
	s, path := openTestStore(t, Options{hooks: b.hooks()})
	ctx := testCtx(t)
	first := appendAsync(ctx, s, 1)
	<-b.enqueued
	<-b.entered
	queued := appendAsync(ctx, s, 10)
	for range 10 {
		<-b.enqueued
	}
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	// Release the writer only once Close has stopped accepting records, so
	// the queued ones are provably drained by Close.
	<-b.closing
	if _, err := s.Append(ctx, &Record{Type: TypeSystem}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append during Close = %v, want ErrClosed", err)
	}
	close(b.release)
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
	if r := <-first; r.err != nil {
		t.Fatalf("first Append = %v", r.err)
	}
	for range 10 {
		if r := <-queued; r.err != nil {
			t.Errorf("queued Append = %v; Close must commit it", r.err)
		}
	}
	if res, err := VerifyFile(ctx, path); err != nil || res.Records != 11 {
		t.Errorf("VerifyFile = %+v, %v; want 11 records", res, err)
	}
}

func TestAppendContext(t *testing.T) {
	t.Run("cancelled before hand-off writes nothing", func(t *testing.T) {
		s, _ := openTestStore(t, Options{})
		ctx, cancel := context.WithCancel(testCtx(t))
		cancel()
		r := requestRecord(0)
		if _, err := s.Append(ctx, r); !errors.Is(err, context.Canceled) {
			t.Fatalf("Append = %v, want context.Canceled", err)
		}
		if seq, _ := s.Head(); seq != 0 || r.Seq != 0 {
			t.Errorf("Head seq %d, r.Seq %d; want 0, 0", seq, r.Seq)
		}
	})
	t.Run("cancelled after hand-off is still committed", func(t *testing.T) {
		b := newBlockingHooks()
		s, _ := openTestStore(t, Options{hooks: b.hooks()})
		ctx, cancel := context.WithCancel(testCtx(t))
		r := requestRecord(0)
		done := make(chan error)
		go func() {
			_, err := s.Append(ctx, r)
			done <- err
		}()
		<-b.enqueued
		<-b.entered
		cancel() // the client hung up while the record was being committed
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Append = %v, want context.Canceled", err)
		}
		close(b.release)
		if err := s.Close(); err != nil { // drains: the commit has finished
			t.Fatal(err)
		}
		if r.Seq != 0 || r.Hash != "" {
			t.Errorf("abandoned Append modified the record: seq %d hash %q", r.Seq, r.Hash)
		}
		if seq, _ := s.Head(); seq != 1 {
			t.Errorf("Head seq = %d, want 1: a handed-off record must be committed", seq)
		}
	})
}

func TestOpenLocked(t *testing.T) {
	s, path := openTestStore(t, Options{})
	_ = s
	for name, open := range map[string]func() error{
		"Open":       func() error { _, err := Open(path, Options{Timeout: 100 * time.Millisecond}); return err },
		"OpenReader": func() error { _, err := OpenReader(path, 100*time.Millisecond); return err },
		"VerifyFile": func() error { _, err := VerifyFile(testCtx(t), path); return err },
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := open()
			if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
				t.Fatalf("%s of a held file = %v; want ErrLocked naming %s", name, err, path)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%s took %v; the lock wait must be bounded", name, d)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("grants")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, tc := range []struct {
		name, path string
		opts       Options
		want       error
	}{
		{"missing directory", filepath.Join(dir, "nope", "audit.db"), Options{}, nil},
		{"path is a directory", dir, Options{}, nil},
		{"not a bbolt file", garbage, Options{}, nil},
		{"another bbolt file", other, Options{}, ErrNotAuditLog},
		{"negative timeout", filepath.Join(dir, "a.db"), Options{Timeout: -1}, ErrInvalidOptions},
		{"negative batch", filepath.Join(dir, "a.db"), Options{MaxBatch: -1}, ErrInvalidOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path, tc.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tc.path)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open(%q) = %v, want %v", tc.path, err, tc.want)
			}
			if tc.want != ErrInvalidOptions && !strings.Contains(err.Error(), tc.path) {
				t.Errorf("Open(%q) = %v; the error must name the path", tc.path, err)
			}
		})
	}
	if _, err := OpenReader(filepath.Join(dir, "absent.db"), 0); err == nil {
		t.Errorf("OpenReader of a missing file succeeded")
	}
	if _, err := OpenReader(other, 0); !errors.Is(err, ErrNotAuditLog) {
		t.Errorf("OpenReader(other bbolt) = %v, want ErrNotAuditLog", err)
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	_, path := openTestStore(t, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode of new audit file = %v, want 0600", perm)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	var lastHash string
	for round := range 3 {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("Open round %d = %v", round, err)
		}
		if seq, hash := s.Head(); seq != uint64(2*round) || (round > 0 && hash != lastHash) {
			t.Errorf("round %d: Head() = %d, %s; want %d, %s", round, seq, hash, 2*round, lastHash)
		}
		for i := range 2 {
			r := requestRecord(i)
			seq, err := s.Append(testCtx(t), r)
			if err != nil || seq != uint64(2*round+i+1) {
				t.Fatalf("round %d: Append = %d, %v", round, seq, err)
			}
			lastHash = r.Hash
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := VerifyFile(testCtx(t), path); err != nil || res.Records != 6 || res.HeadHash != lastHash {
		t.Errorf("VerifyFile = %+v, %v; want 6 records ending in %s", res, err, lastHash)
	}
	checkFile(t, path)
}

func TestScan(t *testing.T) {
	const n = chunkRecords*2 + 10 // several read chunks
	s, path := openTestStore(t, Options{})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range n / 8 {
				if _, err := s.Append(ctx, requestRecord(i)); err != nil {
					t.Errorf("Append = %v", err)
				}
			}
		})
	}
	wg.Wait()
	total, _ := s.Head()
	seqs := func(scan func(func(*Record) error) error) ([]uint64, error) {
		var out []uint64
		err := scan(func(r *Record) error { out = append(out, r.Seq); return nil })
		return out, err
	}
	for _, from := range []uint64{0, 1, 2, chunkRecords, chunkRecords + 1, total, total + 1} {
		got, err := seqs(func(fn func(*Record) error) error { return s.Scan(ctx, from, fn) })
		start := max(from, 1)
		if err != nil || uint64(len(got)) != total-start+1 {
			t.Fatalf("Scan from %d: %d records, %v; want %d", from, len(got), err, total-start+1)
		}
		for i, seq := range got {
			if seq != start+uint64(i) {
				t.Fatalf("Scan from %d: record %d has seq %d, want %d", from, i, seq, start+uint64(i))
			}
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.Scan(ctx, 0, func(*Record) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("Scan with failing fn = %v after %d calls; want %v after 1", err, calls, stop)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Scan(cctx, 0, func(*Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Scan with cancelled ctx = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := seqs(func(fn func(*Record) error) error { return ScanFile(ctx, path, 5, fn) })
	if err != nil || uint64(len(got)) != total-4 || got[0] != 5 {
		t.Errorf("ScanFile from 5 = %d records (first %v), %v; want %d", len(got), got[:min(1, len(got))], err, total-4)
	}
}

// TestAppendDuringVerify checks that readers do not block the writer: a
// verification in progress sees a consistent prefix while appends go on.
func TestAppendDuringVerify(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	ctx := testCtx(t)
	for i := range chunkRecords + 5 {
		mustAppend(t, s, requestRecord(i))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			if _, err := s.Append(ctx, requestRecord(i)); err != nil {
				t.Errorf("Append = %v", err)
				return
			}
		}
	}()
	for range 5 {
		if res, err := s.Verify(ctx); err != nil {
			t.Fatalf("Verify during appends = %+v, %v", res, err)
		}
	}
	<-done
}

func TestPing(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	if err := s.Ping(testCtx(t)); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	if seq, _ := s.Head(); seq != 0 {
		t.Errorf("Ping added a record: Head seq %d", seq)
	}
}

// TestAppendDeferred: a deferred record shares the next Append's commit, is
// committed on its own within DeferDelay when none comes, and is never lost
// at Close.
func TestAppendDeferred(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "audit.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var batches []int
	s.hooks = &testHooks{beforeCommit: func(n int) error { batches = append(batches, n); return nil }}

	done := make(chan error, 3)
	if err := s.AppendDeferred(ctx, &Record{Type: TypeOutcome, Code: "OK"}, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	// Alone, it is committed after at most DeferDelay.
	if err := <-done; err != nil {
		t.Fatalf("deferred commit: %v", err)
	}
	// Queued while the writer is busy, it shares the next Append's commit. The
	// writer is held inside a commit (of x) while d and y queue up behind it.
	gate, inCommit := make(chan struct{}), make(chan struct{}, 1)
	enqueued := make(chan struct{}, 2)
	var mu sync.Mutex
	s.hooks.beforeCommit = func(n int) error {
		batches = append(batches, n)
		mu.Lock()
		g := gate
		mu.Unlock()
		if g != nil {
			inCommit <- struct{}{}
			<-g
		}
		return nil
	}
	s.hooks.enqueued = func() { enqueued <- struct{}{} }
	appended := make(chan error, 2)
	go func() { _, err := s.Append(ctx, &Record{Type: TypeSystem, Detail: "x"}); appended <- err }()
	<-inCommit
	if err := s.AppendDeferred(ctx, &Record{Type: TypeOutcome, Code: "OK"}, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	<-enqueued // x's
	go func() { _, err := s.Append(ctx, &Record{Type: TypeSystem, Detail: "y"}); appended <- err }()
	<-enqueued // y's
	mu.Lock()
	g := gate
	gate = nil // later commits pass straight through
	mu.Unlock()
	close(g)
	for range 2 {
		if err := <-appended; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Close commits what is still queued.
	if err := s.AppendDeferred(ctx, &Record{Type: TypeOutcome, Code: "CANCELLED"}, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	path := s.path
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("deferred record at Close: %v", err)
	}
	if got, want := fmt.Sprint(batches), "[1 1 2 1]"; got != want {
		t.Errorf("commit batch sizes = %s, want %s (alone; x; d shared with y; drained at Close)", got, want)
	}
	res, err := VerifyFile(ctx, path)
	if err != nil || res.Records != 5 {
		t.Errorf("VerifyFile = %+v, %v; want 5 records", res, err)
	}
	if err := s.AppendDeferred(ctx, &Record{Type: TypeOutcome}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendDeferred after Close = %v, want ErrClosed", err)
	}
}
