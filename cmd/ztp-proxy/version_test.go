package main

import (
	"bytes"
	"testing"

	"github.com/ztp-dev/ztp/internal/version"
)

func TestVersionCommandAndFlag(t *testing.T) {
	want := "ztp-proxy " + version.Get().String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		cmd := newRootCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil || out.String() != want {
			t.Errorf("ztp-proxy %v = %q, %v; want %q", args, out.String(), err, want)
		}
	}
}
