package etcd_test

import (
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/proxy"
)

// TestExampleConfig proves the committed ztp.yaml is accepted by the proxy exactly as
// `ztp-proxy serve` builds it: it validates, its policies compile, the protoset loads and
// the audit log opens. No etcd is needed (upstream connections are lazy), so this runs
// in -short mode too.
func TestExampleConfig(t *testing.T) {
	dir := t.TempDir()
	mintCerts(t, dir)
	file := writeExampleConfig(t, dir, "127.0.0.1:0", "127.0.0.1:2379")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config.Load(example ztp.yaml): %v", err)
	}
	if got, want := cfg.Upstreams[0].Services, []string{"etcdserverpb.*"}; !slices.Equal(got, want) {
		t.Errorf("upstreams[0].services = %v, want %v", got, want)
	}
	if cfg.Policy.Mode != "enforce" {
		t.Errorf("policy.mode = %q, want enforce", cfg.Policy.Mode)
	}
	if !slices.Contains(cfg.Audit.Redact, "password") {
		t.Errorf("audit.redact = %v, want it to contain password (Auth/Authenticate, UserAdd)", cfg.Audit.Redact)
	}
	// The safe setup the example teaches: every human rule names its person, so one
	// human's /user/ and /lead/ identities cannot approve each other's break-glass
	// requests; checkpoints are signed and leave the audit file as they are signed.
	for i, p := range cfg.Identity.Principals {
		if p.Kind == "human" && p.Person == "" {
			t.Errorf("identity.principals[%d] (%s): a human rule without person", i, p.Match)
		}
	}
	if cfg.Audit.SigningKey == "" || cfg.Audit.CheckpointDir == "" && len(cfg.Audit.CheckpointCommand) == 0 {
		t.Errorf("audit: signing_key %q, checkpoint_dir %q, checkpoint_command %v; want checkpoints signed and shipped", cfg.Audit.SigningKey, cfg.Audit.CheckpointDir, cfg.Audit.CheckpointCommand)
	}
	srv, err := proxy.New(testCtx(t, 30*time.Second), cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("proxy.New(example config): %v", err)
	}
	if err := srv.Shutdown(testCtx(t, 10*time.Second)); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
