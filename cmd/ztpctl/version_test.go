package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ztp-dev/ztp/internal/version"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

func TestVersion(t *testing.T) {
	build := version.Get()
	out, _, err := runCtl(t, "", "version")
	if err != nil || out != "Client: ztpctl "+build.String()+"\n" {
		t.Errorf("ztpctl version = %q, %v; want the client's build only", out, err)
	}
	out, _, err = runCtl(t, "", "--version")
	if err != nil || out != "ztpctl "+build.String()+"\n" {
		t.Errorf("ztpctl --version = %q, %v", out, err)
	}

	// With --server, the proxy's build too, through the control API.
	env := proxytest.Start(t, proxytest.Options{})
	out, err = ztpctl(t, env, proxytest.AliceID, "version", "-o", "json")
	var v struct {
		Client version.Info
		Server *serverVersion
	}
	if err != nil || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("ztpctl version --server -o json = %q, %v", out, err)
	}
	if v.Client != build || v.Server == nil || v.Server.Version != build.Version || v.Server.Revision != build.Revision || v.Server.Address != env.Addr {
		t.Errorf("ztpctl version --server = %+v / %+v, want client and server %+v at %s", v.Client, v.Server, build, env.Addr)
	}
	text, err := ztpctl(t, env, proxytest.AliceID, "version")
	if err != nil || !strings.Contains(text, "Server: ztp-proxy "+build.Version+" (revision "+build.Revision+") at "+env.Addr) {
		t.Errorf("ztpctl version --server = %q, %v", text, err)
	}

	// A server that was asked for and cannot answer is an error, after the
	// client's own version.
	env.Stop(t)
	out, err = ztpctl(t, env, proxytest.AliceID, "version", "--timeout", "2s")
	if err == nil || !strings.Contains(err.Error(), "server version") || !strings.HasPrefix(out, "Client: ztpctl ") {
		t.Errorf("ztpctl version against a stopped proxy = %q, %v; want the client version, then an error", out, err)
	}
}
