package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A checkpoint proves something only where whoever could rewrite the audit
// file cannot rewrite it too. The Shipper takes every checkpoint the store
// signs off the host as it is signed: into a directory (a mount of other
// storage, or a directory a log shipper drains) and/or to a command's
// standard input (aws s3 cp -, a curl to a ticket system, logger -n …), so
// that shipping does not depend on a cron job someone has to set up.
//
// Shipping never blocks the store: Ship queues and returns. Each
// destination has its own queue and goroutine; a failed delivery is
// retried with exponential backoff, reported to OnResult every time, and
// the queue is bounded — when it is full the oldest checkpoint is dropped
// (reported too): every later checkpoint extends it, so the newest proves
// everything the dropped one did.

// Defaults for ShipperOptions.
const (
	DefaultShipTimeout  = 30 * time.Second
	DefaultShipRetryMin = time.Second
	DefaultShipRetryMax = time.Minute
	// shipQueue bounds the checkpoints waiting per destination.
	shipQueue = 64
	// shipStderr is how much of a failed command's standard error is kept
	// for the error message.
	shipStderr = 2 << 10
)

// ShipperOptions configure a Shipper. At least one of Dir and Command.
type ShipperOptions struct {
	// Dir receives one file per checkpoint, named by CheckpointFileName,
	// written to a temporary file, synced and linked into place, so that a
	// reader never sees a partial file and no file is ever replaced.
	Dir string
	// Command is run (not through a shell) with the signed checkpoint on
	// standard input and ZTP_CHECKPOINT_SIZE, _HASH, _TIME and _NAME (the
	// file name Dir would use) added to the environment. Exit status 0 is
	// success; anything else, or running past Timeout, is a failure.
	Command []string
	// Timeout bounds one run of Command (default DefaultShipTimeout).
	Timeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts (defaults
	// DefaultShipRetryMin, DefaultShipRetryMax).
	RetryMin, RetryMax time.Duration
	// After is the timer the backoff waits on (default time.After); tests
	// fire it by hand.
	After func(time.Duration) <-chan time.Time
	// OnResult is told about every delivery attempt ("dir" or "command"),
	// and with ErrShipDropped about a checkpoint dropped from a full queue.
	// It runs on the destination's goroutine (on Ship's caller for a drop
	// from a full queue), concurrently for several destinations, and must
	// be quick and safe for concurrent use.
	OnResult func(dest string, c Checkpoint, err error)
}

// ErrShipDropped is reported to OnResult for a checkpoint that was never
// delivered: dropped from a full queue, or still pending at Close.
var ErrShipDropped = errors.New("audit: checkpoint not shipped")

// Shipper delivers signed checkpoints to the configured destinations.
type Shipper struct {
	dests   []*shipDest
	closing chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
}

type shipDest struct {
	name     string
	deliver  func(context.Context, Checkpoint) error
	opts     *ShipperOptions
	mu       sync.Mutex
	queue    []shipItem
	next     uint64 // numbers queued items
	wake     chan struct{}
	shipper  *Shipper
	baseCtx  context.Context
	onResult func(string, Checkpoint, error)
}

type shipItem struct {
	n uint64
	c Checkpoint
}

// CheckpointFileName names a checkpoint's file: size first (zero-padded,
// so names sort by size), then the signing time, so that every checkpoint
// gets its own name — two logs reaching the same size (a rollback) too.
func CheckpointFileName(c Checkpoint) string {
	return fmt.Sprintf("checkpoint-%020d-%s.txt", c.Size, c.Time.UTC().Format("20060102T150405.000000000Z"))
}

// NewShipper starts one goroutine per destination. Dir must be an existing
// directory.
func NewShipper(opts ShipperOptions) (*Shipper, error) {
	if opts.Dir == "" && len(opts.Command) == 0 {
		return nil, errors.New("audit: shipper without a destination")
	}
	if len(opts.Command) > 0 && opts.Command[0] == "" {
		return nil, errors.New("audit: checkpoint command with an empty program name")
	}
	if opts.Dir != "" {
		if fi, err := os.Stat(opts.Dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("audit: checkpoint directory %s: not a directory (%v)", opts.Dir, err)
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultShipTimeout
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultShipRetryMin
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(DefaultShipRetryMax, opts.RetryMin)
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.OnResult == nil {
		opts.OnResult = func(string, Checkpoint, error) {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	sh := &Shipper{closing: make(chan struct{}), cancel: cancel}
	if opts.Dir != "" {
		dir := opts.Dir
		sh.dests = append(sh.dests, &shipDest{name: "dir", deliver: func(_ context.Context, c Checkpoint) error { return writeCheckpointFile(dir, c) }})
	}
	if len(opts.Command) > 0 {
		argv, timeout := opts.Command, opts.Timeout
		sh.dests = append(sh.dests, &shipDest{name: "command", deliver: func(ctx context.Context, c Checkpoint) error { return runCheckpointCommand(ctx, argv, timeout, c) }})
	}
	for _, d := range sh.dests {
		d.opts, d.shipper, d.baseCtx, d.onResult = &opts, sh, ctx, opts.OnResult
		d.wake = make(chan struct{}, 1)
		sh.wg.Add(1)
		go d.run()
	}
	return sh, nil
}

// Ship queues c for every destination and returns at once.
func (sh *Shipper) Ship(c Checkpoint) {
	for _, d := range sh.dests {
		d.mu.Lock()
		var dropped *Checkpoint
		if len(d.queue) == shipQueue {
			old := d.queue[0].c
			dropped = &old
			d.queue = d.queue[1:]
		}
		d.next++
		d.queue = append(d.queue, shipItem{d.next, c})
		d.mu.Unlock()
		if dropped != nil {
			d.onResult(d.name, *dropped, fmt.Errorf("%w: dropped from a full queue of %d; checkpoint %d covers it", ErrShipDropped, shipQueue, c.Size))
		}
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// Close delivers what is queued — each checkpoint gets one more attempt,
// without backoff — until ctx ends, then stops the destinations (a running
// command is killed) and reports what was left as ErrShipDropped.
func (sh *Shipper) Close(ctx context.Context) {
	sh.once.Do(func() {
		close(sh.closing)
		done := make(chan struct{})
		go func() { sh.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			sh.cancel()
			<-done
		}
		sh.cancel()
	})
}

func (d *shipDest) head() (shipItem, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queue) == 0 {
		return shipItem{}, false
	}
	return d.queue[0], true
}

// pop removes item n unless Ship dropped it meanwhile.
func (d *shipDest) pop(n uint64) {
	d.mu.Lock()
	if len(d.queue) > 0 && d.queue[0].n == n {
		d.queue = d.queue[1:]
	}
	d.mu.Unlock()
}

func (d *shipDest) run() {
	defer d.shipper.wg.Done()
	backoff := d.opts.RetryMin
	for {
		it, ok := d.head()
		c := it.c
		if !ok {
			select {
			case <-d.wake:
				continue
			case <-d.shipper.closing:
				return
			}
		}
		if d.baseCtx.Err() != nil { // Close gave up: report what is left
			for ; ok; it, ok = d.head() {
				d.onResult(d.name, it.c, fmt.Errorf("%w: still queued when the proxy stopped", ErrShipDropped))
				d.pop(it.n)
			}
			return
		}
		err := d.deliver(d.baseCtx, c)
		d.onResult(d.name, c, err)
		if err == nil {
			d.pop(it.n)
			backoff = d.opts.RetryMin
			continue
		}
		select {
		case <-d.shipper.closing:
			// Stopping: one attempt each, no waiting.
			d.pop(it.n)
			d.onResult(d.name, c, fmt.Errorf("%w: delivery failed when the proxy stopped: %w", ErrShipDropped, err))
			continue
		default:
		}
		select {
		case <-d.opts.After(backoff):
		case <-d.shipper.closing:
		}
		backoff = min(2*backoff, d.opts.RetryMax)
	}
}

// writeCheckpointFile writes c into dir under CheckpointFileName: to a
// temporary file, synced, then hard-linked into place, so the name appears
// complete or not at all and never replaces a file. The directory is synced
// so the name survives a crash.
func writeCheckpointFile(dir string, c Checkpoint) error {
	final := filepath.Join(dir, CheckpointFileName(c))
	tmp, err := os.CreateTemp(dir, ".checkpoint-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(c.Signed)
	if err == nil {
		err = tmp.Chmod(0o644) // a checkpoint is public: size, hash, time, signature
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if old, rerr := os.ReadFile(final); rerr == nil && bytes.Equal(old, c.Signed) {
				return nil // delivered before (a retry after a failed directory sync)
			}
			return fmt.Errorf("%s exists with other contents; not replacing it", final)
		}
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// runCheckpointCommand runs argv with c on standard input.
func runCheckpointCommand(ctx context.Context, argv []string, timeout time.Duration, c Checkpoint) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(c.Signed)
	cmd.Env = append(os.Environ(),
		"ZTP_CHECKPOINT_SIZE="+strconv.FormatUint(c.Size, 10),
		"ZTP_CHECKPOINT_HASH="+c.Hash,
		"ZTP_CHECKPOINT_TIME="+c.Time.UTC().Format(timeLayout),
		"ZTP_CHECKPOINT_NAME="+CheckpointFileName(c),
	)
	stderr := &tailBuffer{max: shipStderr}
	cmd.Stderr = stderr
	// A child that outlives the command (sh -c 'slow &') must not hold the
	// pipe, and with it this goroutine, past the timeout.
	cmd.WaitDelay = time.Second
	killGroup(cmd)
	err := cmd.Run()
	if ctx.Err() != nil && err != nil {
		return fmt.Errorf("%s: %w after %v (killed); stderr: %q", argv[0], ctx.Err(), timeout, stderr.String())
	}
	if err != nil {
		return fmt.Errorf("%s: %w; stderr: %q", argv[0], err, stderr.String())
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.b)) }
