package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestPolicyData(t *testing.T) {
	dir := fixture(t)
	c, err := Parse(filepath.Join(dir, "ztp.yaml"), []byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if d := c.PolicyData(); d != nil {
		t.Errorf("PolicyData without budgets = %v, want nil", d)
	}
	c, err = Parse(filepath.Join(dir, "ztp.yaml"), []byte(valid+"budgets:\n  - prefix: \"delete:\"\n    limit: 100\n    per: 1h\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"budgets": map[string]any{"delete:": map[string]any{"limit": 100.0, "per": "1h0m0s", "per_seconds": 3600.0}}}
	if got := c.PolicyData(); !reflect.DeepEqual(got, want) {
		t.Errorf("PolicyData = %v, want %v", got, want)
	}
}

// LoadOffline checks everything but the files the config names: a CI job that holds the
// policies and ztp.yaml, not the keys, can still read it, and a typo still fails it.
func TestLoadOffline(t *testing.T) {
	dir := t.TempDir() // no certificates, policies or audit directory
	file := filepath.Join(dir, "ztp.yaml")
	must(t, os.WriteFile(file, []byte(valid), 0o644))
	if _, err := Load(file); err == nil {
		t.Fatal("Load accepted a config whose files are missing")
	}
	if _, err := LoadOffline(file); err != nil {
		t.Fatalf("LoadOffline: %v", err)
	}
	must(t, os.WriteFile(file, []byte(strings.Replace(valid, "listen:", "lisen:", 1)), 0o644))
	if _, err := LoadOffline(file); err == nil || !strings.Contains(err.Error(), "lisen") {
		t.Errorf("LoadOffline with a misspelt key = %v", err)
	}
}
