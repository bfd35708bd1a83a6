//go:build !linux

package main

import (
	"errors"
	"os"
	"os/exec"
	"time"
)

var errNoProcCPU = errors.New("per-process CPU time is read from /proc on Linux only")

// fdatasync falls back to fsync where there is no fdatasync.
func fdatasync(f *os.File) error { return f.Sync() }

func processCPU(int) (time.Duration, error) { return 0, errNoProcCPU }

func selfCPU() (time.Duration, error) { return 0, errNoProcCPU }

func fsType(string) string { return "unknown" }

func setParentDeathSignal(*exec.Cmd) {}
