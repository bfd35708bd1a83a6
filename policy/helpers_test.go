package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCtx is a context that ends with the test and can never hang it.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// writeTree creates files (slash paths relative to a new temporary directory) and returns
// the directory.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// loadPolicy loads a single module (plus optional extra files) and fails the test on error.
func loadPolicy(t testing.TB, rego string, extra map[string]string) *Engine {
	t.Helper()
	files := map[string]string{"policy.rego": rego}
	for k, v := range extra {
		files[k] = v
	}
	e, err := Load(testCtx(t), Options{Paths: []string{writeTree(t, files)}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return e
}

func loadEtcd(t testing.TB) *Engine {
	t.Helper()
	e, err := Load(testCtx(t), Options{Paths: []string{"testdata/etcd"}})
	if err != nil {
		t.Fatalf("Load(testdata/etcd): %v", err)
	}
	return e
}

// etcdInput builds the input the proxy would build, in the shape of the README's policy contract, from JSON so
// numbers arrive as json.Number like in the proxy.
func etcdInput(t testing.TB, id, kind string, groups []string, method string, request any) map[string]any {
	t.Helper()
	service, rpc := splitMethod(method)
	in := map[string]any{
		"principal":       map[string]any{"id": id, "kind": kind, "groups": groups, "authn": "mtls"},
		"method":          method,
		"service":         service,
		"rpc":             rpc,
		"upstream":        "etcd",
		"request":         request,
		"request_decoded": request != nil,
		"stream":          map[string]any{"client_streaming": false, "server_streaming": false, "message_index": 0},
		"metadata":        map[string][]string{"x-request-id": {"r-1"}},
		"breakglass":      map[string]any{"active": false},
		"time":            "2026-11-26T10:00:00Z",
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return decodeJSON(t, b)
}

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return out
}

func splitMethod(m string) (service, rpc string) {
	for i := len(m) - 1; i > 0; i-- {
		if m[i] == '/' {
			return m[1:i], m[i+1:]
		}
	}
	return "", m
}
