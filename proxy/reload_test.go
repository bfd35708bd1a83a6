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
