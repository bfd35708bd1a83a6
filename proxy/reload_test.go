package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestReloadPrincipals: a SIGHUP-style reload applies new principal rules to new
// calls; an invalid config is rejected and the running rules stay.
func TestReloadPrincipals(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	c := e.Dial(t, proxytest.AliceID)
	if _, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall before reload: %v", err)
	}
	file := filepath.Join(e.Dir, "ztp.yaml")
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	bad := strings.Replace(string(orig), "kind: human", "kind: robot", 1)
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Server.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "kind") {
		t.Fatalf("Reload(invalid) = %v, want an error naming the key", err)
	}
	if _, err := c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Fatalf("EmptyCall after rejected reload: %v", err)
	}

	removed := strings.Replace(string(orig), `"spiffe://example.org/user/*"`, `"spiffe://example.org/nobody/*"`, 1)
	if err := os.WriteFile(file, []byte(removed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.Server.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	_, err = c.EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall after alice's rule was removed", err, codes.Unauthenticated, "matches no rule")
}

// TestReloadConfigData: policies read the budget limits of ztp.yaml as data.ztp_config,
// and a reload that changes them changes what the policy decides (and its version).
func TestReloadConfigData(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{
		Policy: `package ztp

default allow := false

allow if to_number(object.get(input.request, "responseSize", 0)) <= data.ztp_config.budgets["size:"].limit
`,
		Extra: "budgets:\n  - prefix: \"size:\"\n    limit: 5\n    per: 1h\n",
	})
	c := e.Dial(t, proxytest.DeployerID)
	call := func(size int32) error {
		_, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{ResponseSize: size})
		return err
	}
	if err := call(5); err != nil {
		t.Fatalf("size 5 under limit 5: %v", err)
	}
	proxytest.WantCode(t, "size 7 under limit 5", call(7), codes.PermissionDenied, "not allowed")

	e.RewriteConfig(t, func(s string) string { return strings.Replace(s, "limit: 5", "limit: 10", 1) })
	if err := e.Server.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := call(7); err != nil {
		t.Fatalf("size 7 under limit 10: %v", err)
	}
	recs := e.Requests(t, "/grpc.testing.TestService/UnaryCall")
	if first, last := recs[0].PolicyVersion, recs[len(recs)-1].PolicyVersion; first == last {
		t.Errorf("the policy version did not change with the limits it reads (%s)", last)
	}
}
