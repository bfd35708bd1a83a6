//go:build !unix

package audit

import (
	"os"
	"os/exec"
	"time"
)

// lockFile is a no-op where bbolt does not use flock: the file is checked
// unlocked, and bbolt's own lock follows.
func lockFile(*os.File, bool, time.Duration) error { return nil }

// killGroup leaves cmd's default cancellation (kill the process).
func killGroup(*exec.Cmd) {}
