//go:build race

package proxy_test

// raceEnabled: the race detector slows every message several times over;
// tests that send many large messages send fewer under it.
const raceEnabled = true
