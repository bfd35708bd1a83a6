package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// runCtl runs the CLI in-process, with stdin as its standard input, and
// returns what it wrote to standard output and error.
func runCtl(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(proxytest.Ctx(t))
	return out.String(), errOut.String(), err
}

// ztpctl runs the CLI against env's proxy with a client certificate for id
// ("": none, the args carry the credentials, e.g. --token-file) and returns
// its standard output.
func ztpctl(t *testing.T, env *proxytest.Env, id string, args ...string) (string, error) {
	t.Helper()
	conn := []string{"--server", env.Addr, "--server-name", "localhost", "--cacert", env.CAFile}
	if id != "" {
		cert, key := env.ClientFiles(t, id)
		conn = append(conn, "--cert", cert, "--key", key)
	}
	out, _, err := runCtl(t, "", append(conn, args...)...)
	return out, err
}

func TestPolicyVersion(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	out, err := ztpctl(t, env, proxytest.AliceID, "policy", "version", "-o", "json")
	if err != nil {
		t.Fatalf("ztpctl policy version: %v", err)
	}
	var v struct{ Version, Mode string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || !strings.HasPrefix(v.Version, "sha256:") || v.Mode != "enforce" {
		t.Fatalf("ztpctl policy version -o json = %q (%v), want a sha256 version in enforce mode", out, err)
	}
	// The control call is audited like any other.
	recs := env.Requests(t, "/ztp.v1.Policy/Version")
	if len(recs) != 1 || recs[0].Principal.ID != proxytest.AliceID || recs[0].Decision != "allow" {
		t.Errorf("audit records for Policy/Version = %+v, want one allow by alice", recs)
	}

	text, err := ztpctl(t, env, proxytest.AliceID, "policy", "version")
	if err != nil || !strings.Contains(text, v.Version+" (mode enforce") {
		t.Errorf("ztpctl policy version = %q, %v; want the version and mode", text, err)
	}
}

func TestConnectionErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no cacert", []string{"--cacert", "", "policy", "version"}, "--cacert"},
		{"cert without key", []string{"--cacert", "/dev/null", "--cert", "x.pem", "policy", "version"}, "--cert and --key"},
		{"bad output", []string{"policy", "version", "-o", "yaml"}, "must be one of text | json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCtl(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ztpctl %v = %v, want error containing %q", tc.args, err, tc.want)
			}
		})
	}
}
