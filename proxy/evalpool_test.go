package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/ztp-dev/ztp/policy"
)

// TestEvalPool: evaluations on the pool give the policy's answers, under
// concurrency, when every worker is busy (the caller evaluates) and after Close.
func TestEvalPool(t *testing.T) {
	dir := t.TempDir()
	rego := "package ztp\nallow if input.principal.kind == \"automation\"\ndeny contains sprintf(\"n=%v\", [input.n]) if input.n > 2\n"
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte(rego), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eng, err := policy.Load(ctx, policy.Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(p *evalPool, n int) error {
		kind := "human"
		if n%2 == 0 {
			kind = "automation"
		}
		in, err := policy.Value(map[string]any{"principal": map[string]any{"kind": kind}, "n": n})
		if err != nil {
			return err
		}
		res, err := p.eval(ctx, eng, in)
		if err != nil {
			return err
		}
		wantDeny := 0
		if n > 2 {
			wantDeny = 1
		}
		if res.Allow != (kind == "automation") || len(res.Deny) != wantDeny || (wantDeny == 1 && res.Deny[0] != fmt.Sprintf("n=%d", n)) {
			return fmt.Errorf("n=%d: %+v", n, res)
		}
		return nil
	}

	// Two workers, 32 callers: most callers find every worker busy.
	p := newEvalPool(2)
	var wg sync.WaitGroup
	errs := make(chan error, 32*50)
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				if err := check(p, g*50+i); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.onWorker.Load(); n == 0 {
		t.Errorf("none of %d evaluations ran on the pool's workers", 32*50)
	}

	// A done context denies on the pool as it does inline.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.eval(cctx, eng, ast.NewObject()); err == nil {
		t.Error("eval with a cancelled context: no error")
	}

	p.Close()
	p.Close() // idempotent
	before := p.onWorker.Load()
	if err := check(p, 7); err != nil {
		t.Errorf("after Close: %v", err)
	}
	if p.onWorker.Load() != before {
		t.Error("an evaluation after Close ran on a worker")
	}
	var nilPool *evalPool
	if err := check(nilPool, 4); err != nil {
		t.Errorf("nil pool: %v", err)
	}
}
