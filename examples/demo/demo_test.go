package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the whole `make demo` scenario against a freshly built ztp-proxy.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the ztp-proxy binary")
	}
	bin := t.TempDir()
	for _, c := range []string{"ztp-proxy", "ztpctl"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, c), "github.com/ztp-dev/ztp/cmd/"+c)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", c, err, out)
		}
	}
	var out bytes.Buffer
	if err := run(bin, "policies", false, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"deleting every machine is never allowed",
		"RestartMachine by a human needs break-glass",
		"self-approval refused",
		"under bg-",
		"ztp-proxy exited 0",
		"hash chain verified: ok:",
		"ok: extends checkpoint of",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q\n%s", want, out.String())
		}
	}
}
