package exampletest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/ztp-dev/ztp/policy"
)

// RunRegoTests runs the test_ rules of dir/*_test.rego with OPA's tester, on the modules
// policy.Load parsed and with the capabilities the proxy compiles with, so that a test
// cannot pass by using a built-in the proxy refuses. config is data.ztp_config, as the
// proxy passes it (nil: none). Fewer than min tests is a failure: a typo in a package
// name makes the tester find nothing, which is not a pass.
func RunRegoTests(t *testing.T, dir string, config map[string]any, min int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := policy.Load(ctx, policy.Options{Paths: []string{dir}, Tests: true, Config: config})
	if err != nil {
		t.Fatalf("policy.Load(%s, Tests: true): %v", dir, err)
	}
	store := inmem.NewFromObject(e.Data())
	txn := storage.NewTransactionOrDie(ctx, store)
	defer store.Abort(ctx, txn)
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(policy.Capabilities())).
		SetStore(store).
		SetModules(e.Modules()).
		RaiseBuiltinErrors(true).
		RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("RunTests: %v", err)
	}
	var ran []string
	for r := range ch {
		ran = append(ran, r.Name)
		if !r.Pass() {
			t.Errorf("%s.%s: fail=%v error=%v", r.Package, r.Name, r.Fail, r.Error)
		}
	}
	if len(ran) < min {
		t.Errorf("ran %d Rego tests %v, want at least %d", len(ran), ran, min)
	}
}

// CheckRegoFormatted fails for each dir/*.rego file that is not as `opa fmt` writes it, so
// that a reviewer's diff shows changes in meaning, not layout; fewer than min files is a
// failure too.
func CheckRegoFormatted(t *testing.T, dir string, min int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.rego"))
	if err != nil || len(files) < min {
		t.Fatalf("Glob(%s/*.rego) = %v, %v; want at least %d files", dir, files, err, min)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := format.Source(f, src)
		if err != nil {
			t.Fatalf("format.Source(%s): %v", f, err)
		}
		if !bytes.Equal(src, want) {
			t.Errorf("%s is not formatted as opa fmt would; formatted:\n%s", f, want)
		}
	}
}
