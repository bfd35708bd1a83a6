package testclock

import (
	"slices"
	"sync"
	"time"
)

// Clock is a time source that stands still until Advance moves it. It is safe
// for concurrent use: the code under test reads it from its own goroutines
// while the test moves it.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*Timer // armed, in no particular order
}

// New returns a Clock showing start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's current time; pass the method value where a
// func() time.Time is injected.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d (back, for negative d). Timers that
// are due at the new time fire on the caller's goroutine, earliest first,
// before Advance returns: a test that advanced past a timeout sees its effects.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*Timer
	c.timers = slices.DeleteFunc(c.timers, func(t *Timer) bool {
		if t.at.After(c.now) {
			return false
		}
		t.fired = true
		due = append(due, t)
		return true
	})
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *Timer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.f()
	}
}

// Timer is a function AfterFunc scheduled on a Clock.
type Timer struct {
	c     *Clock
	at    time.Time
	f     func()
	fired bool // or stopped; guarded by c.mu
}

// AfterFunc schedules f to run once Advance has moved the clock d or more
// past now, like time.AfterFunc on real time.
func (c *Clock) AfterFunc(d time.Duration, f func()) *Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &Timer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop keeps t from firing. It reports whether it did: false when t already
// fired or was stopped.
func (t *Timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.fired {
		return false
	}
	t.fired = true
	t.c.timers = slices.DeleteFunc(t.c.timers, func(x *Timer) bool { return x == t })
	return true
}

// Timers returns how many timers are armed: a test waits for the code under
// test to arm its timers before it advances past them.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
