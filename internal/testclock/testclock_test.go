package testclock

import (
	"strings"
	"sync"
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
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	c := New(start)
	var fired []string
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "2s") })
	c.AfterFunc(time.Second, func() { fired = append(fired, "1s") })
	stopped := c.AfterFunc(time.Second, func() { fired = append(fired, "stopped") })
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop of an armed timer = false, or a second Stop = true")
	}
	if c.Timers() != 2 {
		t.Errorf("Timers() = %d, want 2", c.Timers())
	}
	c.Advance(999 * time.Millisecond)
	if len(fired) != 0 {
		t.Fatalf("fired %v before due", fired)
	}
	c.Advance(5 * time.Second)
	if got := strings.Join(fired, " "); got != "1s 2s" {
		t.Errorf("fired %q, want \"1s 2s\" (earliest first)", got)
	}
	if c.Timers() != 0 {
		t.Errorf("Timers() after firing = %d, want 0", c.Timers())
	}
}
