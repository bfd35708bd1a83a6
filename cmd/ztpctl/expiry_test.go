package main

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/internal/testjwt"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestAuditExportFollowEndsAtTokenExpiry: ztpctl audit export --follow with
// a token keeps streaming through exp and the leeway, and ends with
// UNAUTHENTICATED at exp plus the leeway, the client having sent nothing.
func TestAuditExportFollowEndsAtTokenExpiry(t *testing.T) {
	keys := testjwt.NewKeys(t)
	clk := testclock.New(time.Now().UTC().Truncate(time.Second))
	env := proxytest.Start(t, proxytest.Options{
		ClientAuth: "verify_if_given",
		Identity:   proxytest.JWTIdentity(keys.JWKS(t), "30s"),
		Principals: "    - match: \"*@example.com\"\n      kind: human\n      groups: [auditors]\n",
		Audit:      "  readers: [auditors]\n",
		Proxy: func(o *proxy.Options) {
			o.Now = clk.Now
			o.AfterFunc = clk.AfterFunc
		},
	})
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "ed1", testjwt.Claims("ann@example.com", clk.Now()))), 0o600); err != nil {
		t.Fatal(err)
	}
	end := clk.Now().Add(10*time.Minute + 30*time.Second) // exp plus the leeway

	pr, pw := io.Pipe()
	cmd := newRootCommand()
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--server", env.Addr, "--server-name", "localhost", "--cacert", env.CAFile, "--token-file", tokFile,
		"audit", "export", "--follow", "--method", "/ztp.v1.Audit/Export"})
	done := make(chan error, 1)
	go func() {
		done <- cmd.ExecuteContext(proxytest.Ctx(t))
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	if !lines.Scan() { // the export's own decision record
		t.Fatalf("export --follow printed nothing: %v", lines.Err())
	}
	go io.Copy(io.Discard, pr)

	clk.Advance(10*time.Minute + 29*time.Second) // past exp, inside the leeway
	select {
	case err := <-done:
		t.Fatalf("export --follow ended inside the leeway: %v", err)
	default:
	}
	clk.Advance(time.Second)
	err := <-done
	want := "credentials expired at " + end.Format(time.RFC3339)
	if err == nil || !strings.Contains(err.Error(), "Unauthenticated") || !strings.Contains(err.Error(), want) {
		t.Fatalf("export --follow at exp+leeway = %v, want Unauthenticated %s", err, want)
	}
}
