package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Defaults for Options.
const (
	DefaultTimeout  = time.Second
	DefaultMaxBatch = 1024
)

// maxBatchBytes stops a batch from growing past this many encoded bytes, so
// that a burst of large records does not become one huge transaction.
const maxBatchBytes = 32 << 20

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	keyFormat     = []byte("format")
	keyHead       = []byte("head") // uint64be(seq) || hash (32 bytes)
	formatV1      = []byte("ztp-audit-v1")
)

// Options configure a Store.
type Options struct {
	// Timeout bounds the wait for the file lock held by another process
	// (default DefaultTimeout); bbolt's own default of "forever" would hang.
	Timeout time.Duration
	// MaxBatch is the most records committed in one transaction (default
	// DefaultMaxBatch). It also sizes the hand-off queue.
	MaxBatch int
	// Redact lists paths inside Record.Request whose values are replaced
	// by the string "[redacted]": "password" (a top-level key), "*.secret"
	// (key "secret" one level down under any key), "a.b.c". Arrays are
	// transparent. Metadata and the other fields are never redacted.
	Redact []string
	// MaxRequestBytes bounds the stored rendering of Record.Request: a
	// longer canonical, redacted rendering is stored as its first
	// MaxRequestBytes bytes in request_truncated instead of request
	// (0: no bound).
	MaxRequestBytes int
	// Now is the clock for records whose Time is zero (default time.Now).
	Now func() time.Time
	// Warn, when set, is told about damage that Open tolerates: one invalid
	// bbolt meta page (a torn write after power loss, or tampering), which
	// bbolt recovers from by using the other one. Verify reports it too.
	Warn func(msg string)
	// OnCommit, when set, is told about every commit of the writer: how many
	// records it carried, how long the bbolt transaction took (the fsyncs
	// included) and its error. It runs on the writer goroutine and must be quick.
	OnCommit func(records int, took time.Duration, err error)

	hooks *testHooks
}

// testHooks let in-package tests stop the writer at known points.
type testHooks struct {
	enqueued     func()                // after Append handed its record over
	beforeCommit func(batch int) error // inside the write tx; an error aborts it
	closing      func()                // after Close stopped accepting records
}

// Store is an open, writable audit log. Its methods are safe for
// concurrent use.
type Store struct {
	path     string
	db       *bolt.DB
	now      func() time.Time
	redact   []redactPath
	maxBatch int
	// maxRequest is Options.MaxRequestBytes.
	maxRequest int
	hooks      *testHooks
	onCommit   func(records int, took time.Duration, err error)

	mu      sync.RWMutex // held for reading while sending on queue; for writing to close it
	closed  bool
	closing chan struct{} // closed when Close begins
	queue   chan *pending

	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	head atomic.Pointer[chainHead] // last committed record; stored only by Open and the writer

	// appended is closed and replaced after every successful commit, and
	// closed for good by Close: followers wait on it instead of polling.
	appendedMu sync.Mutex
	appended   chan struct{}

	// damaged is set when bbolt panicked or faulted in a commit (the file
	// shrank or was overwritten under the process): every later Append fails.
	damaged atomic.Pointer[error]

	signer       atomic.Pointer[Signer]           // signs checkpoints; nil: none
	onCheckpoint atomic.Pointer[func(Checkpoint)] // told about each new checkpoint
	cpMu         sync.Mutex                       // serializes Checkpoint's read-sign-write
}

type chainHead struct {
	seq  uint64
	hash [32]byte
}

type pending struct {
	e    *entry
	done chan result // buffered: the writer never blocks on a caller that left
	// deferred records do not start a commit of their own: they ride along with
	// the next Append's commit, or are committed after DeferDelay (AppendDeferred).
	deferred bool
	cb       func(error) // AppendDeferred's done; called by the writer, must not block
}

// DeferDelay bounds how long a record handed to AppendDeferred waits for an
// Append to share a commit with before it is committed on its own.
const DeferDelay = 10 * time.Millisecond

type result struct {
	seq        uint64
	time       time.Time
	prev, hash [32]byte
	err        error
}

// Open opens or creates the audit log at path (mode 0600) and starts its
// writer. It fails, naming the path, when the file cannot be opened for
// writing, is locked by another holder past opts.Timeout (ErrLocked), or is
// not an audit log (ErrNotAuditLog). A chain that does not verify is opened
// anyway so that logging can continue; Verify reports the damage.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout < 0 || opts.MaxBatch < 0 || opts.MaxRequestBytes < 0 {
		return nil, fmt.Errorf("%w: negative Timeout, MaxBatch or MaxRequestBytes", ErrInvalidOptions)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	redact, err := parseRedactPaths(opts.Redact)
	if err != nil {
		return nil, err
	}
	db, st, err := openDB(path, opts.Timeout, false)
	if err != nil {
		return nil, err
	}
	for _, w := range st.warnings {
		if opts.Warn != nil {
			opts.Warn(fmt.Sprintf("audit: %s: %s", path, w))
		}
	}
	var head *chainHead
	err = guard(path, func() error {
		return db.Update(func(tx *bolt.Tx) error {
			if err := initBuckets(tx); err != nil {
				return err
			}
			head, err = readHead(tx)
			return err
		})
	})
	if errors.Is(err, ErrDamaged) {
		return nil, err // bbolt may hold its write lock for good: not closed
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	s := &Store{
		path:       path,
		db:         db,
		now:        opts.Now,
		redact:     redact,
		maxBatch:   opts.MaxBatch,
		maxRequest: opts.MaxRequestBytes,
		hooks:      opts.hooks,
		onCommit:   opts.OnCommit,
		queue:      make(chan *pending, opts.MaxBatch),
		writerDone: make(chan struct{}),
		appended:   make(chan struct{}),
		closing:    make(chan struct{}),
	}
	s.head.Store(head)
	go s.run()
	return s, nil
}

// openDB opens the bbolt file at path after checking its page structure
// (checkStructure) under the file lock, so that bbolt never maps a file it
// could not walk safely. A file that does not exist is created (writable
// only); one that exists but is empty is refused, since bbolt would start a
// new log in it and hide the truncation. bbolt's own open is guarded too.
func openDB(path string, timeout time.Duration, readOnly bool) (*bolt.DB, *structure, error) {
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, fs.ErrNotExist) && !readOnly
	var st *structure
	openFile := func(name string, flag int, mode os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, mode)
		if err != nil {
			return nil, err
		}
		if err := lockFile(f, !readOnly, timeout); err != nil {
			f.Close()
			return nil, err
		}
		if fi, err := f.Stat(); err == nil && fi.Size() == 0 && fresh {
			return f, nil // created by this call: bbolt initializes it
		}
		if st, err = checkStructure(f, name); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	var db *bolt.DB
	err := guard(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly, OpenFile: openFile})
		return err
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, fmt.Errorf("%w: %s: still held by another process after %v", ErrLocked, path, timeout)
	case errors.Is(err, ErrDamaged):
		return nil, nil, err
	case err != nil:
		return nil, nil, fmt.Errorf("audit: open %s: %w", path, err)
	}
	if st == nil {
		st = &structure{}
	}
	return db, st, nil
}

// initBuckets creates the buckets in an empty database and refuses any
// other database, so the log is never mixed into someone else's file.
func initBuckets(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var other []byte
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			other = name
			return errors.New("stop")
		})
		if other != nil {
			return fmt.Errorf("%w: it has bucket %q and no %q", ErrNotAuditLog, other, bucketMeta)
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keyFormat, formatV1); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketRecords); err != nil {
			return err
		}
	}
	return checkFormat(tx)
}

func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || tx.Bucket(bucketRecords) == nil {
		return fmt.Errorf("%w: missing %q or %q bucket", ErrNotAuditLog, bucketMeta, bucketRecords)
	}
	if f := meta.Get(keyFormat); string(f) != string(formatV1) {
		return fmt.Errorf("%w: format %q, want %q", ErrNotAuditLog, f, formatV1)
	}
	return nil
}

// readHead returns the chain head: seq and hash from the meta bucket, which
// every commit updates in the same transaction as its records (a log
// without one falls back to its last record). If a key beyond the head
// exists, seq moves past it, so that a record planted there is never
// overwritten; Verify reports it.
func readHead(tx *bolt.Tx) (*chainHead, error) {
	h := &chainHead{}
	k, v := tx.Bucket(bucketRecords).Cursor().Last()
	switch m := tx.Bucket(bucketMeta).Get(keyHead); {
	case m != nil:
		if len(m) != 40 {
			return nil, fmt.Errorf("%w: meta head is %d bytes, want 40", ErrCorrupt, len(m))
		}
		h.seq = binary.BigEndian.Uint64(m)
		copy(h.hash[:], m[8:])
	case k != nil:
		var err error
		if _, h.hash, err = splitLine(v); err != nil {
			return nil, fmt.Errorf("%w: last record: %w", ErrCorrupt, err)
		}
	}
	if len(k) == 8 {
		h.seq = max(h.seq, binary.BigEndian.Uint64(k))
	}
	return h, nil
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// Append makes r durable at the end of the chain: when it returns nil, the
// record is committed and fsync'd, and r.Seq, r.Time, r.PrevHash and r.Hash
// are set. Redaction applies to a copy of r.Request, so r.Hash is over the
// stored (redacted) bytes, which Scan returns.
//
// Records from concurrent callers are group-committed by one writer: a lone
// caller is committed at once, concurrent ones share an fsync.
//
// ctx bounds only the caller's wait. If ctx ends before the record was
// handed to the writer, Append returns ctx's error and nothing is written.
// If it ends afterwards, the record is still committed, but Append returns
// ctx's error without waiting and does not touch r. Either way a non-nil
// error means the caller cannot rely on the record: fail closed. To keep a
// client hang-up from cancelling a record, pass a context detached from the
// caller's (context.WithoutCancel) with its own timeout.
func (s *Store) Append(ctx context.Context, r *Record) (uint64, error) {
	e, err := newEntry(r, s.redact, s.maxRequest)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("audit: record not queued: %w", err)
	}
	p := &pending{e: e, done: make(chan result, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case s.queue <- p:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return 0, fmt.Errorf("audit: record not queued: %w", ctx.Err())
	}
	if s.hooks != nil && s.hooks.enqueued != nil {
		s.hooks.enqueued()
	}
	select {
	case res := <-p.done:
		if res.err != nil {
			return 0, res.err
		}
		r.Seq, r.Time = res.seq, res.time
		r.PrevHash, r.Hash = hexString(res.prev), hexString(res.hash)
		return res.seq, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: stopped waiting for a queued record, which may still be committed: %w", ctx.Err())
	}
}

// AppendDeferred queues r for the next commit without starting one: it is
// committed together with the next Append (sharing its fsync) or on its own
// after at most DeferDelay. It is for records nothing waits on, such as the
// outcome of a call whose decision is already durable. It returns once r is
// queued; done, when non-nil, is called from the writer with the commit's
// result and must not block. Close commits every queued record.
func (s *Store) AppendDeferred(ctx context.Context, r *Record, done func(error)) error {
	e, err := newEntry(r, s.redact, s.maxRequest)
	if err != nil {
		return err
	}
	p := &pending{e: e, done: make(chan result, 1), deferred: true, cb: done}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.queue <- p:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("audit: record not queued: %w", ctx.Err())
	}
	return nil
}

// run is the single writer. It takes the first queued record, adds
// whatever else is already queued (without waiting) up to MaxBatch, and
// commits them in one transaction, so a lone caller never waits for a timer.
// When the previous commit answered several callers and fewer are queued
// now, it yields the processor once before committing: under load that lets
// the callers still on their way join the commit (A/B of the full proxy at 64
// calls in flight: 0.21x -> 0.24x direct, shorter commits).
func (s *Store) run() {
	defer close(s.writerDone)
	batch := make([]*pending, 0, s.maxBatch)
	wait := time.NewTimer(DeferDelay)
	wait.Stop()
	lastWaiters := 0 // callers the previous commit answered
	for first := range s.queue {
		batch = append(batch[:0], first)
		size := len(first.e.buf)
		urgent := !first.deferred // someone waits on this commit
		waiting, yielded := false, false
		waiters := 0
		if urgent {
			waiters++
		}
	fill:
		for len(batch) < s.maxBatch && size < maxBatchBytes {
			var p *pending
			var ok bool
			select {
			case p, ok = <-s.queue:
			default:
				if urgent && !yielded && lastWaiters > 1 && waiters < lastWaiters {
					// Callers are appending concurrently and fewer have
					// arrived than the last commit answered: let the other
					// goroutines run once, so that this commit's fsyncs
					// carry their records too. A lone caller never waits.
					yielded = true
					runtime.Gosched()
					continue
				}
				if urgent {
					break fill
				}
				// Only deferred records so far: give an Append up to DeferDelay
				// to share this commit's fsync.
				if !waiting {
					wait.Reset(DeferDelay)
					waiting = true
				}
				select {
				case p, ok = <-s.queue:
				case <-wait.C:
					waiting = false
					break fill
				}
			}
			if !ok {
				break fill
			}
			batch = append(batch, p)
			size += len(p.e.buf)
			urgent = urgent || !p.deferred
			if !p.deferred {
				waiters++
			}
		}
		if waiting && !wait.Stop() {
			<-wait.C
		}
		s.commit(batch)
		clear(batch)
		lastWaiters = waiters
	}
}

func (s *Store) commit(batch []*pending) {
	head := *s.head.Load()
	results := make([]result, len(batch))
	start := time.Now()
	err := s.update(func(tx *bolt.Tx) error {
		records, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
		if records == nil || meta == nil {
			return ErrNotAuditLog
		}
		records.FillPercent = 1.0 // keys only ever grow: pack pages full
		seq, prev := head.seq, head.hash
		for i, p := range batch {
			if seq == math.MaxUint64 {
				return fmt.Errorf("%w: sequence numbers exhausted", ErrCorrupt)
			}
			seq++
			// readHead already moves past foreign keys; this makes "never
			// overwrites" hold whatever else is in the file.
			if records.Get(seqKey(seq)) != nil {
				return fmt.Errorf("%w: seq %d is already stored", ErrCorrupt, seq)
			}
			line, hash, err := p.e.seal(seq, prev, s.now)
			if err != nil {
				return err
			}
			if err := records.Put(seqKey(seq), line); err != nil {
				return err
			}
			results[i] = result{seq: seq, time: p.e.time, prev: prev, hash: hash}
			prev = hash
		}
		if err := meta.Put(keyHead, append(seqKey(seq), prev[:]...)); err != nil {
			return err
		}
		if s.hooks != nil && s.hooks.beforeCommit != nil {
			return s.hooks.beforeCommit(len(batch))
		}
		return nil
	})
	if s.onCommit != nil {
		s.onCommit(len(batch), time.Since(start), err)
	}
	if errors.Is(err, ErrDamaged) {
		s.fail(batch, fmt.Errorf("%w: %w", ErrWrite, err))
		return
	}
	if err != nil {
		err = fmt.Errorf("%w: %s: %w", ErrWrite, s.path, err)
		// Chain on from what the file holds, not from memory: after a
		// failed commit they could differ.
		_ = guard(s.path, func() error {
			return s.db.View(func(tx *bolt.Tx) error {
				if h, err := readHead(tx); err == nil {
					s.head.Store(h)
				}
				return nil
			})
		})
		s.fail(batch, err)
		return
	}
	last := results[len(results)-1]
	s.head.Store(&chainHead{seq: last.seq, hash: last.hash})
	for i, p := range batch {
		p.done <- results[i]
		if p.cb != nil {
			p.cb(nil)
		}
	}
	s.appendedMu.Lock()
	close(s.appended)
	s.appended = make(chan struct{})
	s.appendedMu.Unlock()
}

// update runs a write transaction, guarded. A panic or fault inside it
// (the file shrank or was overwritten under the process) leaves bbolt's
// state unknown — its rollback faults too and keeps the write lock — so
// the store is marked damaged: nothing more is written, and Close leaves
// the file to the process's exit.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	if p := s.damaged.Load(); p != nil {
		return *p
	}
	err := guard(s.path, func() error { return s.db.Update(fn) })
	if errors.Is(err, ErrDamaged) {
		s.damaged.CompareAndSwap(nil, &err)
	}
	return err
}

// fail answers every record of batch with err.
func (s *Store) fail(batch []*pending, err error) {
	for _, p := range batch {
		p.done <- result{err: err}
		if p.cb != nil {
			p.cb(err)
		}
	}
}

// Appended returns a channel that is closed once records are committed
// after this call, or the store closes. Followers take it before reading
// to the end of the log and wait on it afterwards, so that no commit is
// missed and nobody polls.
func (s *Store) Appended() <-chan struct{} {
	s.appendedMu.Lock()
	defer s.appendedMu.Unlock()
	return s.appended
}

// Close stops accepting records, commits every record already handed to
// the writer, signs a final checkpoint of the head when a signer is set
// (so the last records, such as the proxy's own stop record, are covered),
// and closes the file. Later calls return the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		close(s.closing)
		s.mu.Unlock()
		if s.hooks != nil && s.hooks.closing != nil {
			s.hooks.closing()
		}
		<-s.writerDone
		s.appendedMu.Lock()
		close(s.appended) // wakes followers, who then see ErrClosed
		s.appendedMu.Unlock()
		var errs []error
		if p := s.damaged.Load(); p != nil {
			s.closeErr = fmt.Errorf("audit: %s not closed: %w", s.path, *p)
			return
		}
		if s.signer.Load() != nil {
			if _, _, err := s.checkpoint(); err != nil && !errors.Is(err, ErrNoCheckpoint) {
				errs = append(errs, fmt.Errorf("audit: final checkpoint: %w", err))
			}
		}
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("audit: close %s: %w", s.path, err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Head returns the sequence number and hash (hex) of the last committed
// record; (0, 64 zeros) for an empty log. A signed checkpoint of this pair,
// kept elsewhere, is what detects truncation of the tail.
func (s *Store) Head() (seq uint64, hash string) {
	h := s.head.Load()
	return h.seq, hexString(h.hash)
}

// Ping commits an empty transaction, proving the file is still writable
// and synced, for readiness checks. It does not add a record.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.readable(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		done <- s.update(func(*bolt.Tx) error { return nil })
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrWrite, s.path, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Check runs bbolt's consistency check of the file's page structure. It
// says nothing about the hash chain; that is Verify's job.
func (s *Store) Check() error {
	if err := s.readable(); err != nil {
		return err
	}
	return checkDB(s.db, s.path)
}

// Scan calls fn for each record with Seq >= fromSeq, in seq order. See
// Reader.Scan.
func (s *Store) Scan(ctx context.Context, fromSeq uint64, fn func(*Record) error) error {
	if err := s.readable(); err != nil {
		return err
	}
	return scanRecords(ctx, s.db, fromSeq, fn)
}

// ScanLines calls fn with the stored bytes (the exported JSON line) of each
// record with Seq >= fromSeq, in seq order. See Reader.ScanLines.
func (s *Store) ScanLines(ctx context.Context, fromSeq uint64, fn func(seq uint64, line []byte) error) error {
	if err := s.readable(); err != nil {
		return err
	}
	return scanLines(ctx, s.db, fromSeq, fn)
}

// Verify walks the whole chain while appends continue. See VerifyFile.
func (s *Store) Verify(ctx context.Context) (VerifyResult, error) {
	if err := s.readable(); err != nil {
		return VerifyResult{}, err
	}
	return verifyDB(ctx, s.db, nil)
}

// VerifyExtends walks the whole chain while appends continue and proves
// that it extends cp. See Reader.VerifyExtends.
func (s *Store) VerifyExtends(ctx context.Context, cp Checkpoint) (VerifyResult, error) {
	if err := s.readable(); err != nil {
		return VerifyResult{}, err
	}
	return verifyDB(ctx, s.db, &cp)
}

// readable reports ErrClosed once Close has begun; reads racing with Close
// may also see bbolt's "database not open", which is mapped in the read
// helpers.
func (s *Store) readable() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

func hexString(h [32]byte) string {
	return string(appendHex(nil, h)[1:65])
}

func checkDB(db *bolt.DB, path string) error {
	var errs []error
	err := guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				errs = append(errs, err)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("audit: check %s: %w", path, mapClosed(err))
	}
	if len(errs) > 0 {
		return fmt.Errorf("audit: check %s: %w", path, errors.Join(errs...))
	}
	return nil
}

func mapClosed(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w (%w)", ErrClosed, err)
	}
	return err
}
