package policy

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testPolicy = `package ztp

default allow := false

allow if input.principal.kind == "automation"

deny contains "humans may not put" if {
	input.principal.kind == "human"
	input.rpc == "Put"
}

forbid contains "too many" if to_number(input.request.n) > 3
`

func TestRunTests(t *testing.T) {
	type want struct {
		err      error
		errHas   string
		outcomes map[string]string // test name → outcome
		detail   map[string]string // test name → substring of Detail
		output   map[string]string // test name → substring of Output
	}
	tests := []struct {
		name  string
		files map[string]string
		run   string
		want  want
	}{
		{
			name: "pass fail error skip",
			files: map[string]string{
				"p.rego": testPolicy,
				"p_test.rego": `package ztp_test

import data.ztp

test_automation_allowed if ztp.allow with input as {"principal": {"kind": "automation"}}

test_wrong_expectation if ztp.allow with input as {"principal": {"kind": "human"}}

test_builtin_error if {
	print("n is", "x")
	count(ztp.forbid) == 0 with input as {"request": {"n": "x"}}
}

todo_test_later if false
`,
			},
			want: want{
				outcomes: map[string]string{
					"test_automation_allowed": TestPass,
					"test_wrong_expectation":  TestFail,
					"test_builtin_error":      TestError,
					"todo_test_later":         TestSkip,
				},
				detail: map[string]string{"test_builtin_error": "p.rego:12:31: eval_builtin_error: to_number"},
				output: map[string]string{"test_builtin_error": "n is x"},
			},
		},
		{
			name: "filter",
			files: map[string]string{
				"p.rego":      testPolicy,
				"p_test.rego": "package ztp_test\n\nimport data.ztp\n\ntest_a if true\n\ntest_b if false\n",
			},
			run:  "_a$",
			want: want{outcomes: map[string]string{"test_a": TestPass}},
		},
		{
			name: "data files and the library are there for tests",
			files: map[string]string{
				"p.rego":      "package ztp\n\nimport data.ztp.lib\n\nallow if lib.in_any_group(data.writers)\n",
				"d.yaml":      "writers: [deployers]\n",
				"p_test.rego": "package ztp_test\n\nimport data.ztp\n\ntest_writer if ztp.allow with input as {\"principal\": {\"groups\": [\"deployers\"]}}\n",
			},
			want: want{outcomes: map[string]string{"test_writer": TestPass}},
		},
		{
			name: "tests without package ztp",
			files: map[string]string{
				"helpers.rego":      "package helpers\n\ndouble(x) := 2 * x\n",
				"helpers_test.rego": "package helpers_test\n\nimport data.helpers\n\ntest_double if helpers.double(2) == 4\n",
			},
			want: want{outcomes: map[string]string{"test_double": TestPass}},
		},
		{
			name:  "no tests",
			files: map[string]string{"p.rego": testPolicy},
			want:  want{outcomes: map[string]string{}},
		},
		{
			name: "compile error in a test file",
			files: map[string]string{
				"p.rego":      testPolicy,
				"p_test.rego": "package ztp_test\n\ntest_x if {\n\ty == 1\n}\n",
			},
			want: want{err: ErrCompile, errHas: "p_test.rego:4:2: rego_unsafe_var_error: var y is unsafe"},
		},
		{
			name: "a test may not use what the proxy refuses",
			files: map[string]string{
				"p.rego":      testPolicy,
				"p_test.rego": "package ztp_test\n\ntest_net if http.send({\"method\": \"GET\", \"url\": \"http://x\"})\n",
			},
			want: want{err: ErrCompile, errHas: "p_test.rego:3:13: rego_type_error: undefined function http.send (disabled in ztp"},
		},
		{
			name: "a policy the proxy would not load fails even when its tests pass",
			files: map[string]string{
				"p.rego":      "package ztp\n\nallow(x) := true\n",
				"p_test.rego": "package ztp_test\n\ntest_x if true\n",
			},
			want: want{err: ErrCompile, errHas: "ztp decision query"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			rep, err := RunTests(testCtx(t), TestOptions{Paths: []string{dir}, Run: tc.run})
			if tc.want.err != nil {
				if !errors.Is(err, tc.want.err) || !strings.Contains(err.Error(), tc.want.errHas) {
					t.Fatalf("RunTests = %v, want %v containing %q", err, tc.want.err, tc.want.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("RunTests: %v", err)
			}
			got := map[string]string{}
			for _, r := range rep.Results {
				got[r.Name] = r.Outcome
				if !strings.HasPrefix(r.File, dir) || r.Row == 0 || r.Col == 0 {
					t.Errorf("%s: location %s, want a position in %s", r.Name, r.Location(), dir)
				}
				if want, ok := tc.want.detail[r.Name]; ok && !strings.Contains(r.Detail, want) {
					t.Errorf("%s: Detail = %q, want it to contain %q", r.Name, r.Detail, want)
				}
				if want, ok := tc.want.output[r.Name]; ok && !strings.Contains(r.Output, want) {
					t.Errorf("%s: Output = %q, want it to contain %q", r.Name, r.Output, want)
				}
			}
			if len(got) != len(tc.want.outcomes) {
				t.Errorf("ran %v, want %v", got, tc.want.outcomes)
			}
			for name, want := range tc.want.outcomes {
				if got[name] != want {
					t.Errorf("%s: outcome %q, want %q", name, got[name], want)
				}
			}
			wantPassed := true
			for _, o := range tc.want.outcomes {
				wantPassed = wantPassed && (o == TestPass || o == TestSkip)
			}
			if rep.Passed() != wantPassed {
				t.Errorf("Passed() = %v, want %v", rep.Passed(), wantPassed)
			}
		})
	}
}

func TestRunTestsCoverage(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.rego": testPolicy,
		"p_test.rego": `package ztp_test

import data.ztp

test_automation if ztp.allow with input as {"principal": {"kind": "automation"}}
`,
	})
	rep, err := RunTests(testCtx(t), TestOptions{Paths: []string{dir}, Coverage: true})
	if err != nil {
		t.Fatalf("RunTests: %v", err)
	}
	c := rep.Coverage
	if c == nil || len(c.Files) != 1 {
		t.Fatalf("Coverage = %+v, want one file (the test file does not count)", c)
	}
	f := c.Files[0]
	if f.File != filepath.Join(dir, "p.rego") {
		t.Errorf("covered file = %s, want p.rego", f.File)
	}
	// The default (allow was true), deny (7-9) and forbid (12) never ran.
	if want := [][2]int{{3, 3}, {7, 9}, {12, 12}}; !slices.Equal(f.Missed, want) {
		t.Errorf("Missed = %v, want %v", f.Missed, want)
	}
	if c.Covered == 0 || c.NotCovered == 0 || c.Percent <= 0 || c.Percent >= 100 {
		t.Errorf("Coverage = %+v, want partial coverage", c)
	}
	if want := 100 * float64(c.Covered) / float64(c.Covered+c.NotCovered); c.Percent != want {
		t.Errorf("Percent = %v, want %v", c.Percent, want)
	}
}

func TestLoadTested(t *testing.T) {
	passing := "package ztp_test\n\nimport data.ztp\n\ntest_a if ztp.allow with input as {\"principal\": {\"kind\": \"automation\"}}\n"
	failing := "package ztp_test\n\nimport data.ztp\n\ntest_a if ztp.allow with input as {\"principal\": {\"kind\": \"human\"}}\n"
	tests := []struct {
		name   string
		files  map[string]string
		err    error
		errHas string
	}{
		{"tests pass", map[string]string{"p.rego": testPolicy, "p_test.rego": passing}, nil, ""},
		{"no tests", map[string]string{"p.rego": testPolicy}, nil, ""},
		{"a test fails", map[string]string{"p.rego": testPolicy, "p_test.rego": failing}, ErrTestsFailed, "p_test.rego:5:1: data.ztp_test.test_a FAIL"},
		{"a test does not compile", map[string]string{"p.rego": testPolicy, "p_test.rego": "package ztp_test\n\ntest_a if {"}, ErrCompile, "p_test.rego:3:"},
		{"the policy does not compile", map[string]string{"p.rego": "package ztp\n\nallow if x\n", "p_test.rego": passing}, ErrCompile, "p.rego:3:10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, tc.files)
			e, rep, err := LoadTested(testCtx(t), Options{Paths: []string{dir}})
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.errHas) || e != nil {
					t.Fatalf("LoadTested = %v, %v, want %v containing %q and no engine", e, err, tc.err, tc.errHas)
				}
				if errors.Is(err, ErrTestsFailed) && (rep == nil || rep.Passed()) {
					t.Errorf("report = %+v, want the failing test in it", rep)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadTested: %v", err)
			}
			plain, err := Load(testCtx(t), Options{Paths: []string{dir}})
			if err != nil {
				t.Fatal(err)
			}
			if e.Version() != plain.Version() {
				t.Errorf("LoadTested version %s, Load version %s: want the same (tests are not part of it)", e.Version(), plain.Version())
			}
			if _, ok := e.Modules()[filepath.Join(dir, "p_test.rego")]; ok {
				t.Error("the engine compiled the test file")
			}
		})
	}
}
