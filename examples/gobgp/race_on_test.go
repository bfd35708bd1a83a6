//go:build race

package gobgp_test

// raceEnabled: this test binary runs under the race detector, so the proxy it builds for
// the end-to-end test is built with -race as well.
const raceEnabled = true
