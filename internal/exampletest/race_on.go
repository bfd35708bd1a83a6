//go:build race

package exampletest

// raceEnabled: the test binary runs under the race detector, so the binaries it builds
// for end-to-end tests are built with -race as well.
const raceEnabled = true
