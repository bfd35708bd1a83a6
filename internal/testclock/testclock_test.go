package testclock

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	c := New(start)
	if got := c.Now(); !got.Equal(start) {
		t.Fatalf("Now() = %v, want %v", got, start)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Millisecond)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(400*time.Millisecond); !got.Equal(want) {
		t.Errorf("Now() after 400 concurrent Advance(1ms) = %v, want %v", got, want)
	}
}

func TestAfterFunc(t *testing.T) {
	c := New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	var fired []string
	var mu sync.Mutex
	record := func(name string) func() {
		return func() { mu.Lock(); fired = append(fired, name); mu.Unlock() }
	}
	got := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), fired...) }

	c.AfterFunc(3*time.Second, record("3s"))
	c.AfterFunc(time.Second, record("1s"))
	stop2 := c.AfterFunc(2*time.Second, record("2s"))
	// A timer added by a running one fires in the same Advance when due, in
	// deadline order with the others (its deadline is the clock's new time).
	c.AfterFunc(time.Second, func() { c.AfterFunc(0, record("chained")) })

	c.Advance(999 * time.Millisecond)
	if f := got(); len(f) != 0 {
		t.Fatalf("fired %v before any timer was due", f)
	}
	if !stop2() {
		t.Error("stop of a pending timer = false, want true")
	}
	if stop2() {
		t.Error("second stop = true, want false")
	}
	c.Advance(5 * time.Second)
	if f, want := got(), []string{"1s", "3s", "chained"}; !slices.Equal(f, want) {
		t.Errorf("fired %v, want %v (earliest first, stopped timer never)", f, want)
	}
	if n := c.Pending(); n != 0 {
		t.Errorf("Pending() = %d after every timer fired, want 0", n)
	}

	stopNow := c.AfterFunc(-time.Second, record("past"))
	if f := got(); f[len(f)-1] != "past" {
		t.Errorf("a timer due in the past did not fire at once: %v", f)
	}
	if stopNow() {
		t.Error("stop after the timer fired = true, want false")
	}
}

// TestAfterFuncConcurrent: timers added, stopped and fired from several
// goroutines fire at most once each, and a stopped one never.
func TestAfterFuncConcurrent(t *testing.T) {
	c := New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	var fired, stopped atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 100 {
				stop := c.AfterFunc(time.Duration(i%3)*time.Millisecond, func() { fired.Add(1) })
				if i%2 == 0 && stop() {
					stopped.Add(1)
				}
				c.Advance(time.Millisecond)
			}
		})
	}
	wg.Wait()
	c.Advance(time.Hour)
	if fired.Load()+stopped.Load() != 400 {
		t.Errorf("fired %d + stopped %d, want 400 in all", fired.Load(), stopped.Load())
	}
}
