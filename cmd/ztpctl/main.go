// Command ztpctl is the ztp command line for engineers (break-glass), auditors
// (audit export and verify) and policy authors (policy test, eval, replay).
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ztpctl:", err)
		os.Exit(exitCode(err))
	}
}
