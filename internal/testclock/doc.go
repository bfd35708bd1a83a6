// Package testclock is the hand-moved clock the tests of several packages
// inject where production code takes a func() time.Time: expiry, refill and
// cache tests move it instead of sleeping. Its AfterFunc timers fire when
// Advance passes them, on the goroutine that advances. It is for tests only.
package testclock
