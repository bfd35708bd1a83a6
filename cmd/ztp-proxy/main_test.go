package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
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
