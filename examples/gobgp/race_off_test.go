//go:build !race

package gobgp_test

const raceEnabled = false
