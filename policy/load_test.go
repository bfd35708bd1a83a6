package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestLoadErrors(t *testing.T) {
	const ok = "package ztp\ndefault allow := false\n"
	tests := []struct {
		name    string
		files   map[string]string
		path    string // relative to the tree; "" for its root
		wantErr error
		errHas  []string
	}{
		{
			name:    "no rego files",
			files:   map[string]string{"data.json": "{}", "README.md": "# policies"},
			wantErr: ErrNoPolicy,
		},
		{
			name:    "only test files",
			files:   map[string]string{"etcd_test.rego": "package ztp_test\ntest_x if true"},
			wantErr: ErrNoPolicy,
		},
		{
			name:    "no package ztp",
			files:   map[string]string{"a.rego": "package other\nallow := true"},
			wantErr: ErrNoPackage,
		},
		{
			name:    "unsafe variable",
			files:   map[string]string{"policies/etcd.rego": "package ztp\n\nallow if {\n\tx == 1\n}\n"},
			path:    "policies",
			wantErr: ErrCompile,
			errHas:  []string{"policies/etcd.rego:4:2: rego_unsafe_var_error: var x is unsafe"},
		},
		{
			name:    "parse error",
			files:   map[string]string{"etcd.rego": "package ztp\nallow if {\n"},
			wantErr: ErrCompile,
			errHas:  []string{"etcd.rego:3:", "rego_parse_error"},
		},
		{
			name:    "v0 syntax rejected",
			files:   map[string]string{"etcd.rego": "package ztp\nallow { true }\n"},
			wantErr: ErrCompile,
			errHas:  []string{"etcd.rego:2:1: rego_parse_error: `if` keyword is required"},
		},
		{
			name: "every error of a compile stage, across files",
			files: map[string]string{
				"a.rego": "package ztp\nallow if y == 1\n",
				"b.rego": "package ztp\ndeny contains \"d\" if z == 1\n",
			},
			wantErr: ErrCompile,
			errHas:  []string{"a.rego:2:10: rego_unsafe_var_error: var y is unsafe", "b.rego:2:22: rego_unsafe_var_error: var z is unsafe"},
		},
		{
			name:    "http.send rejected at compile",
			files:   map[string]string{"etcd.rego": "package ztp\nallow if {\n\thttp.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}).status_code == 200\n}\n"},
			wantErr: ErrCompile,
			errHas:  []string{"etcd.rego:3:2: rego_type_error: undefined function http.send", "disabled in ztp"},
		},
		{
			name:    "net.lookup_ip_addr rejected at compile",
			files:   map[string]string{"etcd.rego": "package ztp\nallow if count(net.lookup_ip_addr(\"example.org\")) > 0\n"},
			wantErr: ErrCompile,
			errHas:  []string{"undefined function net.lookup_ip_addr", "disabled in ztp"},
		},
		{
			name:    "opa.runtime rejected at compile",
			files:   map[string]string{"etcd.rego": "package ztp\nallow if opa.runtime().env.ALLOW == \"1\"\n"},
			wantErr: ErrCompile,
			errHas:  []string{"undefined function opa.runtime"},
		},
		{
			name:    "allow defined as a function",
			files:   map[string]string{"p.rego": "package ztp\nallow(x) if x == 1\n"},
			wantErr: ErrCompile,
			errHas:  []string{"ztp decision query:1:", "function data.ztp.allow used as reference"},
		},
		{
			name:    "malformed json",
			files:   map[string]string{"p.rego": ok, "etcd/limits.json": `{"a": 1,}`},
			wantErr: ErrData,
			errHas:  []string{"etcd/limits.json"},
		},
		{
			name:    "json with trailing data",
			files:   map[string]string{"p.rego": ok, "d.json": `{"a": 1} {"b": 2}`},
			wantErr: ErrData,
			errHas:  []string{"d.json", "unexpected data"},
		},
		{
			name:    "malformed yaml",
			files:   map[string]string{"p.rego": ok, "d.yaml": "a: [1, 2\n"},
			wantErr: ErrData,
			errHas:  []string{"d.yaml"},
		},
		{
			name:    "yaml with non-string keys",
			files:   map[string]string{"p.rego": ok, "d.yml": "a:\n  1: x\n  [2]: y\n"},
			wantErr: ErrData,
			errHas:  []string{"d.yml"},
		},
		{
			name:    "two yaml documents",
			files:   map[string]string{"p.rego": ok, "d.yaml": "a: 1\n---\nb: 2\n"},
			wantErr: ErrData,
			errHas:  []string{"d.yaml", "more than one"},
		},
		{
			name:    "top-level data must be an object",
			files:   map[string]string{"p.rego": ok, "d.json": `[1, 2]`},
			wantErr: ErrData,
			errHas:  []string{"d.json", "must be an object"},
		},
		{
			name:    "conflicting data files",
			files:   map[string]string{"p.rego": ok, "a.json": `{"etcd": {"groups": ["a"]}}`, "b.yaml": "etcd:\n  groups: [b]\n"},
			wantErr: ErrData,
			errHas:  []string{"b.yaml", "data.etcd.groups"},
		},
		{
			name:    "data conflicting with a rule",
			files:   map[string]string{"p.rego": ok, "d.json": `{"ztp": {"allow": true}}`},
			wantErr: ErrCompile,
			errHas:  []string{"p.rego:2:", "conflicting rule for data path ztp/allow"},
		},
		{
			name:    "unsupported file named directly",
			files:   map[string]string{"p.rego": ok, "notes.txt": "x"},
			path:    "notes.txt",
			wantErr: ErrUnsupportedFile,
		},
		{
			name:    "missing path",
			files:   map[string]string{"p.rego": ok},
			path:    "nope",
			wantErr: fs.ErrNotExist,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := writeTree(t, tc.files)
			// Relative paths, as in ztp.yaml, so messages read policies/etcd.rego:4:2.
			t.Chdir(root)
			path := tc.path
			if path == "" {
				path = "."
			}
			e, err := Load(testCtx(t), Options{Paths: []string{path}})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Load(%q) = %v, %v; want error %v", path, e, err, tc.wantErr)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Load(%q) error = %q, want it to contain %q", path, err, s)
				}
			}
		})
	}
}

// TestLoadData checks where data files land in data and that policies read them.
func TestLoadData(t *testing.T) {
	root := writeTree(t, map[string]string{
		"policies/p.rego": `package ztp
default allow := false
allow if {
	input.principal in data.team.members
	input.method in data.etcd.methods
	data.etcd.max == 3
	data.shared.flag == true
	data.root_yaml == "yes"
}`,
		"policies/team.json":        `{"team": {"members": ["alice"]}}`,
		"policies/root.yml":         "root_yaml: \"yes\"\n",
		"policies/etcd/limits.yaml": "methods: [/kv/put]\nmax: 3\n",
		"policies/.hidden/x.json":   `not even json`,
		"policies/README.md":        "ignored",
		"shared.json":               `{"shared": {"flag": true}}`,
	})
	paths := []string{filepath.Join(root, "policies"), filepath.Join(root, "shared.json")}
	e, err := Load(testCtx(t), Options{Paths: paths})
	if err != nil {
		t.Fatalf("Load(%v): %v", paths, err)
	}
	res, err := e.Eval(testCtx(t), map[string]any{"principal": "alice", "method": "/kv/put"})
	if err != nil || !res.Allow {
		t.Errorf("Eval = %+v, %v; want allow from data", res, err)
	}
	res, err = e.Eval(testCtx(t), map[string]any{"principal": "mallory", "method": "/kv/put"})
	if err != nil || res.Allow {
		t.Errorf("Eval(mallory) = %+v, %v; want not allowed", res, err)
	}

	d := e.Data()
	// A file in a subdirectory lands under the directory's name, not the file's.
	etcd, _ := d["etcd"].(map[string]any)
	if etcd["max"] != 3 {
		t.Fatalf("Data()[etcd][max] = %v (%T), want 3", etcd["max"], etcd["max"])
	}
	etcd["max"] = 99 // a copy: the engine must not see this
	if again := e.Data()["etcd"].(map[string]any)["max"]; again != 3 {
		t.Errorf("Data() after modifying a copy = %v, want 3", again)
	}
}

func TestLoadSkipsHiddenAndFollowsSymlinks(t *testing.T) {
	root := writeTree(t, map[string]string{
		"real/p.rego":          "package ztp\nallow := true",
		"policies/.swp.rego":   "not rego",
		"policies/.git/x.rego": "not rego",
	})
	// A Kubernetes ConfigMap volume: files are links into a hidden ..data directory.
	if err := os.Symlink(filepath.Join(root, "real"), filepath.Join(root, "policies", "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "p.rego"), filepath.Join(root, "policies", "p.rego")); err != nil {
		t.Fatal(err)
	}
	// A loop must not hang the walk.
	if err := os.Symlink(filepath.Join(root, "policies"), filepath.Join(root, "policies", "loop")); err != nil {
		t.Fatal(err)
	}
	e, err := Load(testCtx(t), Options{Paths: []string{filepath.Join(root, "policies")}})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := len(e.Modules()); got != 1 {
		t.Errorf("len(Modules()) = %d, want 1 (hidden files skipped, the link followed once)", got)
	}
}

func TestLoadSameFileTwice(t *testing.T) {
	root := writeTree(t, map[string]string{"p.rego": "package ztp\nallow := true", "d.json": `{"a": 1}`})
	e, err := Load(testCtx(t), Options{Paths: []string{root, filepath.Join(root, "d.json"), filepath.Join(root, "p.rego")}})
	if err != nil {
		t.Fatalf("Load of overlapping paths: %v", err)
	}
	if got := len(e.Modules()); got != 1 {
		t.Errorf("len(Modules()) = %d, want 1", got)
	}
}

func TestVersion(t *testing.T) {
	files := map[string]string{
		"p.rego":      "package ztp\nallow := true\n",
		"etcd/d.json": `{"a": 1}`,
	}
	load := func(dir string) string {
		t.Helper()
		e, err := Load(testCtx(t), Options{Paths: []string{dir}})
		if err != nil {
			t.Fatalf("Load(%s): %v", dir, err)
		}
		return e.Version()
	}
	dir := writeTree(t, files)
	v1 := load(dir)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(v1) {
		t.Fatalf("Version() = %q, want sha256:<64 hex>", v1)
	}

	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name    string
		change  func()
		changed bool
	}{
		{"reload unchanged", func() {}, false},
		{"add a test file", func() { write("p_test.rego", "package ztp_test\ntest_a if true\n") }, false},
		{"add an unrelated file", func() { write("README.md", "hello") }, false},
		{"add a hidden file", func() { write(".p.rego.swp", "junk") }, false},
		{"edit the policy", func() { write("p.rego", "package ztp\nallow := false\n") }, true},
		{"edit data", func() { write("etcd/d.json", `{"a": 2}`) }, true},
		{"add a data file", func() { write("e.json", `{"e": 1}`) }, true},
		{"move a data file (changes data.x)", func() {
			if err := os.Rename(filepath.Join(dir, "e.json"), filepath.Join(dir, "etcd", "e.json")); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	prev := v1
	for _, s := range steps {
		s.change()
		got := load(dir)
		if (got != prev) != s.changed {
			t.Errorf("%s: Version %s → %s, want changed=%v", s.name, prev, got, s.changed)
		}
		prev = got
	}

	// The same files elsewhere on disk have the same version.
	if a, b := load(writeTree(t, files)), load(writeTree(t, files)); a != b || a != v1 {
		t.Errorf("Version of identical trees in different directories: %s, %s, want both %s", a, b, v1)
	}
}

func TestCapabilities(t *testing.T) {
	c := Capabilities()
	names := map[string]bool{}
	for _, b := range c.Builtins {
		names[b.Name] = true
	}
	for name, want := range map[string]bool{
		"http.send":          false,
		"net.lookup_ip_addr": false,
		"opa.runtime":        false,
		"net.cidr_contains":  true,
		"time.now_ns":        true,
		"to_number":          true,
	} {
		if names[name] != want {
			t.Errorf("Capabilities() has %s = %v, want %v", name, names[name], want)
		}
	}
	if c.AllowNet == nil || len(c.AllowNet) != 0 {
		t.Errorf("AllowNet = %#v, want empty and non-nil (no host allowed)", c.AllowNet)
	}
	c.Builtins = nil
	if len(Capabilities().Builtins) == 0 {
		t.Error("Capabilities() returned shared state: clearing one copy emptied the next")
	}
}
