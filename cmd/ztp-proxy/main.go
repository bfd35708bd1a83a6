// Command ztp-proxy is the ztp safe proxy: it sits in front of a gRPC admin API,
// authenticates every caller, decides every message with OPA policies, audits the
// decision durably and only then forwards the call.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ztp-proxy:", err)
		os.Exit(1)
	}
}
