// Package testclock is the hand-moved clock the tests of several packages
// inject where production code takes a func() time.Time (Now) or an
// AfterFunc: expiry, refill and cache tests move it instead of sleeping, and
// timers due fire inside Advance, before it returns. It is for tests only.
package testclock
