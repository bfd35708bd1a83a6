package gobgp_test

import (
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/proxy"
)

// TestExampleConfig proves the committed ztp.yaml is accepted by the proxy exactly as
// `ztp-proxy serve` builds it: it validates, its policies compile (and their tests pass),
// the protoset loads and the audit log opens. No gobgpd is needed (upstream connections
// are lazy), so this runs in -short mode too.
func TestExampleConfig(t *testing.T) {
	dir := t.TempDir()
	mintCerts(t, dir)
	file := writeExampleConfig(t, dir, "127.0.0.1:0", "127.0.0.1:50051")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config.Load(example ztp.yaml): %v", err)
	}
	if got, want := cfg.Upstreams[0].Services, []string{"apipb.*"}; !slices.Equal(got, want) {
		t.Errorf("upstreams[0].services = %v, want %v", got, want)
	}
	if cfg.Policy.Mode != "enforce" {
		t.Errorf("policy.mode = %q, want enforce", cfg.Policy.Mode)
	}
	if !slices.Contains(cfg.Audit.Redact, "peer.conf.authPassword") {
		t.Errorf("audit.redact = %v, want it to contain peer.conf.authPassword (gobgp neighbor add --password)", cfg.Audit.Redact)
	}
	if b, ok := cfg.PolicyData()["budgets"].(map[string]any)["withdraw:"]; !ok {
		t.Errorf("budgets has no \"withdraw:\" entry (policies/budgets.rego draws withdraw:<upstream>): %v", cfg.PolicyData())
	} else {
		t.Logf("withdraw budget: %v", b)
	}
	srv, err := proxy.New(testCtx(t, 30*time.Second), cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("proxy.New(example config): %v", err)
	}
	if err := srv.Shutdown(testCtx(t, 10*time.Second)); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestProtosetUpToDate regenerates gobgp.protoset with gen-protoset.sh --check, which
// fails when the committed file is not what the pinned inputs make. It needs protoc and
// Debian's golang-github-osrg-gobgp-dev, and skips without them.
func TestProtosetUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs protoc")
	}
	for _, f := range []string{"/usr/share/gocode/src/github.com/osrg/gobgp/api/gobgp.proto", "/usr/include/google/protobuf/any.proto"} {
		if !fileExists(f) {
			t.Skipf("%s missing (apt-get install -y golang-github-osrg-gobgp-dev libprotobuf-dev)", f)
		}
	}
	if _, err := exec.LookPath("protoc"); err != nil {
		t.Skip("protoc not in PATH (apt-get install -y protobuf-compiler)")
	}
	out, err := exec.Command("bash", filepath.Join(".", "gen-protoset.sh"), "--check").CombinedOutput()
	if err != nil {
		t.Errorf("gen-protoset.sh --check: %v\n%s", err, out)
	}
}
