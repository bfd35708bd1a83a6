package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

type shipResult struct {
	dest string
	c    Checkpoint
	err  error
}

func needSh(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
}

// TestShipperDeliversEveryCheckpoint: a store signing on its own ships
// each checkpoint, the final one of Close included, to a directory (one
// file each, never replaced) and to a command reading standard input.
func TestShipperDeliversEveryCheckpoint(t *testing.T) {
	needSh(t)
	dir, out := t.TempDir(), t.TempDir()
	results := make(chan shipResult, 100)
	sh, err := NewShipper(ShipperOptions{
		Dir:      dir,
		Command:  []string{"sh", "-c", `cat > "$OUT/$ZTP_CHECKPOINT_NAME.$ZTP_CHECKPOINT_SIZE"`},
		OnResult: func(d string, c Checkpoint, err error) { results <- shipResult{d, c, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUT", out)
	s, _ := signingStore(t, fixedClock())
	s.OnCheckpoint(sh.Ship)
	for i := range 3 {
		mustAppend(t, s, requestRecord(i))
		if _, err := s.Checkpoint(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Checkpoint(); err != nil { // head unmoved: nothing new to ship
			t.Fatal(err)
		}
	}
	mustAppend(t, s, requestRecord(3))
	if err := s.Close(); err != nil { // signs the final checkpoint (size 4)
		t.Fatal(err)
	}
	sh.Close(testCtx(t))
	close(results)
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: checkpoint %d: %v", r.dest, r.c.Size, r.err)
		}
	}
	pub := testKey().Public().(ed25519.PublicKey)
	for _, d := range []string{dir, out} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		var sizes []uint64
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			c, err := OpenCheckpoint(b, pub)
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			if !strings.HasPrefix(e.Name(), CheckpointFileName(c)) {
				t.Errorf("%s holds checkpoint %d, named %s", e.Name(), c.Size, CheckpointFileName(c))
			}
			sizes = append(sizes, c.Size)
		}
		slices.Sort(sizes)
		if !slices.Equal(sizes, []uint64{1, 2, 3, 4}) {
			t.Errorf("%s holds checkpoints of sizes %v, want 1 2 3 4 (temporary files left: %v)", d, sizes, entries)
		}
	}
}

// TestShipperRetriesAFailingCommand: a failing command is reported and
// retried after the backoff (fired by hand), and Ship never waits for it.
func TestShipperRetriesAFailingCommand(t *testing.T) {
	needSh(t)
	fail := filepath.Join(t.TempDir(), "fail")
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fire := make(chan time.Time)
	var waits []time.Duration
	results := make(chan shipResult, 10)
	sh, err := NewShipper(ShipperOptions{
		Command:  []string{"sh", "-c", `cat >/dev/null; if [ -e "$1" ]; then echo "bucket unreachable" >&2; exit 3; fi`, "sh", fail},
		RetryMin: time.Second, RetryMax: 4 * time.Second,
		After:    func(d time.Duration) <-chan time.Time { waits = append(waits, d); return fire },
		OnResult: func(d string, c Checkpoint, err error) { results <- shipResult{d, c, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close(testCtx(t))
	c := Checkpoint{Size: 7, Hash: zeroHash, Time: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC), Signed: []byte("signed note\n")}
	sh.Ship(c)
	for attempt := range 3 {
		r := <-results
		if r.err == nil || !strings.Contains(r.err.Error(), "bucket unreachable") || r.dest != "command" {
			t.Fatalf("attempt %d: %+v, want the command's failure with its stderr", attempt, r)
		}
		if attempt < 2 {
			fire <- time.Time{}
		}
	}
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	fire <- time.Time{}
	if r := <-results; r.err != nil || r.c.Size != 7 {
		t.Fatalf("after the command recovered: %+v", r)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("backoff %v, want %v", waits, want)
	}
}

// TestShipperKillsAHangingCommand: a command past its timeout is killed
// (its children too) and the failure reported; at Close the checkpoint
// still pending is reported as not shipped.
func TestShipperKillsAHangingCommand(t *testing.T) {
	needSh(t)
	results := make(chan shipResult, 10)
	sh, err := NewShipper(ShipperOptions{
		Command:  []string{"sh", "-c", "sleep 60 & sleep 60"},
		Timeout:  100 * time.Millisecond,
		After:    func(time.Duration) <-chan time.Time { return make(chan time.Time) }, // never retried
		OnResult: func(d string, c Checkpoint, err error) { results <- shipResult{d, c, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	sh.Ship(Checkpoint{Size: 1, Hash: zeroHash, Signed: []byte("x\n")})
	if r := <-results; r.err == nil || !strings.Contains(r.err.Error(), "killed") {
		t.Fatalf("hanging command: %+v, want it killed at its timeout", r)
	}
	sh.Close(testCtx(t))
	close(results)
	var dropped int
	for r := range results {
		if errors.Is(r.err, ErrShipDropped) {
			dropped++
		}
	}
	if dropped != 1 {
		t.Errorf("%d checkpoints reported as not shipped at Close, want 1", dropped)
	}
}

// TestShipperBoundsItsQueue: while a destination fails, checkpoints queue
// up to a bound; beyond it the oldest is dropped and reported — the newest
// covers it.
func TestShipperBoundsItsQueue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	results := make(chan shipResult, 1000)
	sh, err := NewShipper(ShipperOptions{
		Dir:      dir,
		After:    func(time.Duration) <-chan time.Time { return make(chan time.Time) },
		OnResult: func(d string, c Checkpoint, err error) { results <- shipResult{d, c, err} },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dir); err != nil { // every write fails from now on
		t.Fatal(err)
	}
	for i := range shipQueue + 10 {
		sh.Ship(Checkpoint{Size: uint64(i + 1), Hash: zeroHash, Signed: []byte("x\n")})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // give up at once
	sh.Close(ctx)
	close(results)
	dropped := map[uint64]int{}
	for r := range results {
		if errors.Is(r.err, ErrShipDropped) {
			dropped[r.c.Size]++
		}
	}
	if len(dropped) != shipQueue+10 {
		t.Errorf("%d distinct checkpoints reported not shipped, want all %d", len(dropped), shipQueue+10)
	}
}

func TestNewShipperRefuses(t *testing.T) {
	for _, o := range []ShipperOptions{
		{},
		{Command: []string{""}},
		{Dir: filepath.Join(t.TempDir(), "missing")},
	} {
		if _, err := NewShipper(o); err == nil {
			t.Errorf("NewShipper(%+v) = nil error", o)
		}
	}
}
