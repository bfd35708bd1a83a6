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
	timers []*timer // pending, in no particular order
}

type timer struct {
	at time.Time
	f  func()
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

// Advance moves the clock forward by d (back, for negative d). Timers due at
// the new time run before Advance returns, earliest first, on the caller's
// goroutine and without the clock's lock (they may read the clock or add
// timers), so a test sees their effect as soon as Advance returns.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	c.fireDue()
}

// AfterFunc is time.AfterFunc on this clock: f runs when Advance moves the
// clock to d from now or beyond (at once, when d ≤ 0). The returned stop
// cancels it, reporting whether it did (false: f already ran or was stopped),
// as (*time.Timer).Stop does. Pass the method value where an
// AfterFunc(time.Duration, func()) func() bool is injected.
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	t := &timer{f: f}
	c.mu.Lock()
	t.at = c.now.Add(d)
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	if d <= 0 {
		c.fireDue()
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.timers, t)
		if i < 0 {
			return false
		}
		c.timers = slices.Delete(c.timers, i, i+1)
		return true
	}
}

// Pending returns how many timers wait to run: tests check that what they
// stopped does not linger.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// fireDue runs the timers due at the clock's time, one at a time, taking each
// off the list before it runs so that a concurrent stop reports false.
func (c *Clock) fireDue() {
	for {
		c.mu.Lock()
		next := -1
		for i, t := range c.timers {
			if !t.at.After(c.now) && (next < 0 || t.at.Before(c.timers[next].at)) {
				next = i
			}
		}
		if next < 0 {
			c.mu.Unlock()
			return
		}
		t := c.timers[next]
		c.timers = slices.Delete(c.timers, next, next+1)
		c.mu.Unlock()
		t.f()
	}
}
