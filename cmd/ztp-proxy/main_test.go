package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

func TestEveryCommandHasExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Example == "" && c.Parent() != nil && c.Name() != "help" && c.Name() != "completion" && c.Parent().Name() != "completion" {
			t.Errorf("%s has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
}

func TestValidateNamesTheKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ztp.yaml")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:7443\ncolour: blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"validate", "--config", file})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "ztp.yaml:2: colour: unknown key") {
		t.Fatalf("validate = %v, want the file, line and key of the unknown key", err)
	}
}

// TestValidateRedactNames: validate refuses a redact pattern written with a
// field's protobuf name, as start-up does.
func TestValidateRedactNames(t *testing.T) {
	e := proxytest.Prepare(t, proxytest.Options{Audit: "  redact: [\"response_size\"]\n"})
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"validate", "--config", e.Config})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), `audit.redact[0]: "response_size"`) || !strings.Contains(err.Error(), `write "responseSize"`) {
		t.Fatalf("validate = %v, want audit.redact[0] named with the JSON name to use", err)
	}
}
