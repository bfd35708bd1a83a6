package policy

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/format"
)

// TestLibraryRegoTests runs the shipped library's own Rego tests, as CI does, with the
// proxy's capabilities, and requires them to cover every line of it.
func TestLibraryRegoTests(t *testing.T) {
	rep, err := RunTests(testCtx(t), TestOptions{Paths: []string{"lib/ztp"}, Coverage: true})
	if err != nil {
		t.Fatalf("RunTests(lib/ztp): %v", err)
	}
	for _, r := range rep.Results {
		if r.Outcome != TestPass {
			t.Errorf("%s: %s.%s: %s %s", r.Location(), r.Package, r.Name, r.Outcome, r.Detail)
		}
	}
	if n := len(rep.Results); n < 16 {
		t.Errorf("ran %d library tests, want at least 16", n)
	}
	if c := rep.Coverage; c == nil || c.Percent < 100 {
		t.Errorf("library coverage = %+v, want 100%%", c)
	}
}

// TestLibraryEmbedded pins the embedded copy to the file its tests run against, and keeps
// both library files as opa fmt writes them.
func TestLibraryEmbedded(t *testing.T) {
	src, err := os.ReadFile("lib/ztp/lib.rego")
	if err != nil {
		t.Fatal(err)
	}
	if Library() != string(src) {
		t.Error("Library() differs from lib/ztp/lib.rego")
	}
	for _, f := range []string{"lib/ztp/lib.rego", "lib/ztp/lib_test.rego"} {
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

// TestLibraryIncluded checks when Load compiles the library in: whenever a module may read
// data.ztp.lib, never otherwise, and never over a package ztp.lib the tree brings itself.
func TestLibraryIncluded(t *testing.T) {
	const head = "package ztp\n\ndefault allow := false\n\n"
	tests := []struct {
		name  string
		files map[string]string
		tests bool
		want  bool
	}{
		{
			name:  "not referenced",
			files: map[string]string{"p.rego": head + "allow if input.rpc == \"Get\"\n"},
		},
		{
			name:  "import",
			files: map[string]string{"p.rego": head + "import data.ztp.lib\n\nallow if lib.read_only\n"},
			want:  true,
		},
		{
			name:  "import with alias",
			files: map[string]string{"p.rego": head + "import data.ztp.lib as helpers\n\nallow if helpers.read_only\n"},
			want:  true,
		},
		{
			name:  "full reference",
			files: map[string]string{"p.rego": head + "allow if data.ztp.lib.read_only\n"},
			want:  true,
		},
		{
			name: "through an import of data.ztp",
			files: map[string]string{
				"p.rego": head + "allow if input.rpc == \"Get\"\n",
				"q.rego": "package other\n\nimport data.ztp\n\nx if ztp.lib.mutating\n",
			},
			want: true,
		},
		{
			name: "import of data.ztp used for other rules only",
			files: map[string]string{
				"p.rego": head + "allow if input.rpc == \"Get\"\n",
				"q.rego": "package other\n\nimport data.ztp\n\nx if ztp.allow\n",
			},
		},
		{
			name: "dynamic key of data.ztp",
			files: map[string]string{
				"p.rego": head + "allow if input.rpc == \"Get\"\n",
				"q.rego": "package other\n\nx if data.ztp[input.which].read_only\n",
			},
			want: true,
		},
		{
			name: "only a test refers to it, tests not loaded",
			files: map[string]string{
				"p.rego":      head + "allow if input.rpc == \"Get\"\n",
				"p_test.rego": "package ztp_test\n\nimport data.ztp.lib\n\ntest_x if lib.read_only with input as {\"rpc\": \"Get\"}\n",
			},
		},
		{
			name: "only a test refers to it, tests loaded",
			files: map[string]string{
				"p.rego":      head + "allow if input.rpc == \"Get\"\n",
				"p_test.rego": "package ztp_test\n\nimport data.ztp.lib\n\ntest_x if lib.read_only with input as {\"rpc\": \"Get\"}\n",
			},
			tests: true,
			want:  true,
		},
		{
			name: "the tree vendors its own ztp.lib",
			files: map[string]string{
				"p.rego":   head + "import data.ztp.lib\n\nallow if lib.read_only\n",
				"lib.rego": "package ztp.lib\n\nread_only if input.rpc == \"Get\"\n",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			e, err := Load(testCtx(t), Options{Paths: []string{dir}, Tests: tc.tests})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			_, got := e.Modules()[libraryFile]
			if got != tc.want {
				t.Errorf("library loaded = %v, want %v (modules %v)", got, tc.want, slices.Sorted(maps.Keys(e.Modules())))
			}
		})
	}
}

// TestLibraryInVersion: the library's content is part of what a version names, so a
// ztp upgrade that changes it changes the version of policies that use it.
func TestLibraryInVersion(t *testing.T) {
	uses := writeTree(t, map[string]string{"p.rego": "package ztp\n\nimport data.ztp.lib\n\nallow if lib.read_only\n"})
	e, err := Load(testCtx(t), Options{Paths: []string{uses}})
	if err != nil {
		t.Fatal(err)
	}
	want := version([]policyFile{
		{logical: "p.rego", content: []byte("package ztp\n\nimport data.ztp.lib\n\nallow if lib.read_only\n")},
		{logical: libraryLogical, content: []byte(librarySource)},
	})
	if e.Version() != want {
		t.Errorf("Version() = %s, want %s (policy file and library)", e.Version(), want)
	}
}

// TestLibraryDecisions evaluates a policy written with the library the way the proxy does.
func TestLibraryDecisions(t *testing.T) {
	e := loadPolicy(t, `package ztp

import data.ztp.lib

default allow := false

allow if lib.read_only

allow if {
	lib.is_automation
	lib.in_group("deployers")
}

deny contains "humans change /config/ only under break-glass" if {
	lib.mutating
	lib.is_human
	lib.touches_prefix("/config/")
}

forbid contains "never the whole keyspace" if lib.whole_keyspace
`, nil)
	alice := []string{"sre"}
	tests := []struct {
		name    string
		kind    string
		groups  []string
		method  string
		request any
		grant   string
		want    string
		reasons []string
	}{
		{"human range", "human", alice, "/etcdserverpb.KV/Range", map[string]any{"key": "L2NvbmZpZy94"}, "", DecisionAllow, nil},
		{"human put to /config/", "human", alice, "/etcdserverpb.KV/Put", map[string]any{"key": "L2NvbmZpZy94"}, "", DecisionDeny, []string{"humans change /config/ only under break-glass"}},
		{"human put under break-glass", "human", alice, "/etcdserverpb.KV/Put", map[string]any{"key": "L2NvbmZpZy94"}, "bg-1", DecisionAllow, []string{"humans change /config/ only under break-glass"}},
		{"human put elsewhere not allowed", "human", alice, "/etcdserverpb.KV/Put", map[string]any{"key": "L290aGVy"}, "", DecisionDeny, []string{ReasonNotAllowed}},
		{"deployer keyspace wipe", "automation", []string{"deployers"}, "/etcdserverpb.KV/DeleteRange", map[string]any{"key": "AA==", "rangeEnd": "AA=="}, "bg-1", DecisionDeny, []string{"never the whole keyspace"}},
		{"deployer undecoded", "automation", []string{"deployers"}, "/etcdserverpb.KV/Put", nil, "", DecisionAllow, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := etcdInput(t, "spiffe://example.org/x", tc.kind, tc.groups, tc.method, tc.request)
			res, err := e.Eval(testCtx(t), in)
			v := Decide(res, err, Enforce, tc.grant)
			if v.Decision != tc.want || !slices.Equal(v.Reasons, tc.reasons) {
				t.Errorf("Decide = %s %q (eval err %v), want %s %q", v.Decision, v.Reasons, err, tc.want, tc.reasons)
			}
		})
	}
}

// TestLibraryRequestErrorsFailClosed: a key that is not base64 is an evaluation error,
// which denies, rather than a range that touches nothing.
func TestLibraryRequestErrorsFailClosed(t *testing.T) {
	e := loadPolicy(t, "package ztp\n\nimport data.ztp.lib\n\nallow := true\n\nforbid contains \"config\" if lib.touches_prefix(\"/config/\")\n", nil)
	in := etcdInput(t, "spiffe://example.org/x", "automation", nil, "/etcdserverpb.KV/Put", map[string]any{"key": "not base64!"})
	res, err := e.Eval(testCtx(t), in)
	if !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "base64.decode") {
		t.Fatalf("Eval = %+v, %v; want ErrEval from base64.decode", res, err)
	}
	if v := Decide(res, err, Enforce, "bg-1"); v.Forward() {
		t.Errorf("Decide = %+v, want a denial", v)
	}
}
