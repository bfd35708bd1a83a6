package policy

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEvalShapes covers what a policy may define and the shapes its decision rules may take:
// missing rules are empty, undefined allow is a deny, wrong types and failing built-ins are
// errors, never a silent allow.
func TestEvalShapes(t *testing.T) {
	tests := []struct {
		name    string
		rego    string
		input   string
		want    Result
		wantErr error
		errHas  string
	}{
		{
			name:  "allow only",
			rego:  "package ztp\nallow if input.ok",
			input: `{"ok": true}`,
			want:  Result{Allow: true},
		},
		{
			name:  "allow undefined without default",
			rego:  "package ztp\nallow if input.ok\ndeny contains \"d\" if input.d",
			input: `{"ok": false, "d": false}`,
			want:  Result{AllowUndefined: true},
		},
		{
			name:  "allow undefined keeps deny and forbid",
			rego:  "package ztp\nallow if input.ok\ndeny contains \"d\" if true\nforbid contains \"f\" if true",
			input: `{}`,
			want:  Result{AllowUndefined: true, Deny: []string{"d"}, Forbid: []string{"f"}},
		},
		{
			name:  "no allow rule at all",
			rego:  "package ztp\ndeny contains \"d\" if input.d",
			input: `{"d": true}`,
			want:  Result{AllowUndefined: true, Deny: []string{"d"}},
		},
		{
			name:  "default allow false",
			rego:  "package ztp\ndefault allow := false\nallow if input.ok",
			input: `{}`,
			want:  Result{},
		},
		{
			name:  "deny sorted and deduplicated",
			rego:  "package ztp\ndefault allow := true\ndeny contains r if some r in input.reasons",
			input: `{"reasons": ["b", "a", "b", "c"]}`,
			want:  Result{Allow: true, Deny: []string{"a", "b", "c"}},
		},
		{
			name:  "deny as complete rule, undefined",
			rego:  "package ztp\nallow := true\ndeny := {\"x\"} if input.x",
			input: `{}`,
			want:  Result{Allow: true},
		},
		{
			name:  "deny as complete rule, defined",
			rego:  "package ztp\nallow := true\ndeny := {\"x\"} if input.x",
			input: `{"x": true}`,
			want:  Result{Allow: true, Deny: []string{"x"}},
		},
		{
			name:  "budgets sorted",
			rego:  "package ztp\nallow := true\nbudgets contains {\"key\": \"b\", \"cost\": 2}\nbudgets contains {\"key\": \"a\", \"cost\": 0.5}\nbudgets contains {\"key\": \"a\", \"cost\": 0.25}",
			input: `{}`,
			want:  Result{Allow: true, Budgets: []Budget{{"a", 0.25}, {"a", 0.5}, {"b", 2}}},
		},
		{
			name:  "helper rules in other packages are ignored",
			rego:  "package ztp\nimport data.helpers\nallow if helpers.ok",
			input: `{"ok": true}`,
			want:  Result{Allow: true},
		},
		{
			name:    "allow not boolean",
			rego:    "package ztp\nallow := \"yes\"",
			input:   `{}`,
			wantErr: ErrType,
			errHas:  "data.ztp.allow must be a boolean, got string",
		},
		{
			name:    "allow is an object",
			rego:    "package ztp\nallow.x := true",
			input:   `{}`,
			wantErr: ErrType,
			errHas:  "got object",
		},
		{
			name:    "deny is an array",
			rego:    "package ztp\nallow := true\ndeny := [\"x\"]",
			input:   `{}`,
			wantErr: ErrType,
			errHas:  "must be a set of strings, got array",
		},
		{
			name:    "deny is a boolean rule",
			rego:    "package ztp\nallow := true\ndeny if true",
			input:   `{}`,
			wantErr: ErrType,
		},
		{
			name:    "forbid contains a number",
			rego:    "package ztp\nallow := true\nforbid contains 1",
			input:   `{}`,
			wantErr: ErrType,
			errHas:  "data.ztp.forbid must be a set of strings, has number 1",
		},
		{
			name:    "budget without cost",
			rego:    "package ztp\nallow := true\nbudgets contains {\"key\": \"k\"}",
			input:   `{}`,
			wantErr: ErrType,
		},
		{
			name:    "budget with misspelt field",
			rego:    "package ztp\nallow := true\nbudgets contains {\"key\": \"k\", \"cost\": 1, \"costs\": 2}",
			input:   `{}`,
			wantErr: ErrType,
			errHas:  "unknown field",
		},
		{
			name:    "budget with negative cost",
			rego:    "package ztp\nallow := true\nbudgets contains {\"key\": \"k\", \"cost\": -1}",
			input:   `{}`,
			wantErr: ErrType,
		},
		{
			name:    "budget with string cost",
			rego:    "package ztp\nallow := true\nbudgets contains {\"key\": \"k\", \"cost\": \"1\"}",
			input:   `{}`,
			wantErr: ErrType,
		},
		{
			name:    "builtin error in forbid is an error, not undefined",
			rego:    "package ztp\nallow := true\nforbid contains \"big\" if to_number(input.n) > 10",
			input:   `{"n": "x"}`,
			wantErr: ErrEval,
			errHas:  "policy.rego:3:",
		},
		{
			name:    "conflicting values of a complete rule",
			rego:    "package ztp\nallow := true if input.a\nallow := false if input.b",
			input:   `{"a": true, "b": true}`,
			wantErr: ErrEval,
			errHas:  "eval_conflict_error",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := loadPolicy(t, tc.rego, map[string]string{"helpers.rego": "package helpers\nok if input.ok"})
			res, err := e.Eval(testCtx(t), decodeJSON(t, []byte(tc.input)))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("Eval(%s) = %+v, %v; want error %v containing %q", tc.input, res, err, tc.wantErr, tc.errHas)
				}
				v := Decide(res, err, Enforce, "bg-1")
				if v.Decision != DecisionError || v.Forward() || len(v.Reasons) != 1 || !strings.HasPrefix(v.Reasons[0], ReasonErrorPrefix) {
					t.Errorf("Decide(_, %v, enforce, grant) = %+v, want a non-forwarded error verdict", err, v)
				}
				return
			}
			if err != nil {
				t.Fatalf("Eval(%s): %v", tc.input, err)
			}
			if !resultEqual(res, tc.want) {
				t.Errorf("Eval(%s) = %+v, want %+v", tc.input, res, tc.want)
			}
		})
	}
}

func resultEqual(a, b Result) bool {
	return a.Allow == b.Allow && a.AllowUndefined == b.AllowUndefined &&
		slices.Equal(a.Deny, b.Deny) && slices.Equal(a.Forbid, b.Forbid) && slices.Equal(a.Budgets, b.Budgets)
}

// TestUndefinedAllowDenies checks the whole path for a policy that forgets its default.
func TestUndefinedAllowDenies(t *testing.T) {
	e := loadPolicy(t, "package ztp\nallow if input.method == \"/ok\"", nil)
	res, err := e.Eval(testCtx(t), map[string]any{"method": "/other"})
	v := Decide(res, err, Enforce, "")
	want := Verdict{Decision: DecisionDeny, Reasons: []string{ReasonAllowUndefined}}
	if !verdictEqual(v, want) {
		t.Errorf("Decide(Eval(/other)) = %+v (eval err %v), want %+v", v, err, want)
	}
	if got := DeniedMessage(v.Reasons); got != "ztp: denied: policy: allow undefined" {
		t.Errorf("DeniedMessage = %q", got)
	}
}

// TestBuiltinErrorDecision is the brief's runtime error case end to end: strict built-in
// errors turn to_number("x") into Decision "error", which is not forwarded.
func TestBuiltinErrorDecision(t *testing.T) {
	e := loadPolicy(t, "package ztp\ndefault allow := false\nallow if to_number(input.n) < 5", nil)
	res, err := e.Eval(testCtx(t), map[string]any{"n": "x"})
	if !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "eval_builtin_error") || !strings.Contains(err.Error(), "to_number") {
		t.Fatalf("Eval(n=x) error = %v, want ErrEval with eval_builtin_error: to_number", err)
	}
	for _, mode := range []Mode{Enforce, DryRun} {
		v := Decide(res, err, mode, "")
		want := map[Mode]string{Enforce: DecisionError, DryRun: DecisionDryRunDeny}[mode]
		if v.Decision != want || !strings.HasPrefix(v.Reasons[0], "policy error: ") || !strings.Contains(v.Reasons[0], "to_number") {
			t.Errorf("Decide(_, %v, %q, \"\") = %+v, want decision %q with the error as reason", err, mode, v, want)
		}
	}
}

func TestEvalContextDone(t *testing.T) {
	e := loadEtcd(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	res, err := e.Eval(ctx, etcdInput(t, aliceID, "human", nil, "/etcdserverpb.KV/Range", map[string]any{}))
	if !errors.Is(err, ErrEval) {
		t.Fatalf("Eval(cancelled ctx) = %+v, %v; want ErrEval", res, err)
	}
	if v := Decide(res, err, Enforce, ""); v.Forward() {
		t.Errorf("Decide after cancelled eval = %+v, want no forward", v)
	}
}

// TestEvalInterruptedByContext: a context that ends while a slow policy is
// being evaluated stops the evaluation, and the message is denied as an error,
// never allowed by the rules that did not get to run.
func TestEvalInterruptedByContext(t *testing.T) {
	e := loadPolicy(t, `package ztp

default allow := true

# About 10^8 steps: minutes, unless interrupted.
deny contains "slow" if {
	some i in numbers.range(1, 100000000)
	i < 0
}
`, nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	res, err := e.Eval(ctx, map[string]any{})
	if !errors.Is(err, ErrEval) {
		t.Fatalf("Eval cancelled half-way = %+v, %v; want ErrEval", res, err)
	}
	if v := Decide(res, err, Enforce, ""); v.Forward() || v.Decision != DecisionError {
		t.Errorf("Decide after an interrupted evaluation = %+v, want error, no forward", v)
	}
}

// TestInputConversion checks that the Go shapes the proxy builds reach the policy as JSON
// would, without a JSON round trip.
func TestInputConversion(t *testing.T) {
	e := loadPolicy(t, `package ztp
default allow := false
allow if {
	input.n == 3
	input.big == "18446744073709551615"
	input.f == 1.5
	input.i64 == 7
	input.groups == ["a", "b"]
	input.metadata["x-request-id"] == ["r-1", "r-2"]
	input.list[0].k == "v"
	input.ss == {"k": "v"}
	input.null == null
	input.nested.arr[1] == 2
}`, nil)
	in := map[string]any{
		"n":        json.Number("3"),
		"big":      "18446744073709551615",
		"f":        1.5,
		"i64":      int64(7),
		"groups":   []string{"a", "b"},
		"metadata": map[string][]string{"x-request-id": {"r-1", "r-2"}},
		"list":     []map[string]any{{"k": "v"}},
		"ss":       map[string]string{"k": "v"},
		"null":     nil,
		"nested":   map[string]any{"arr": []any{json.Number("1"), 2}},
	}
	res, err := e.Eval(testCtx(t), in)
	if err != nil || !res.Allow {
		t.Fatalf("Eval(%v) = %+v, %v; want allow", in, res, err)
	}

	for name, bad := range map[string]any{
		"NaN":             math.NaN(),
		"infinity":        math.Inf(1),
		"bad json.Number": json.Number("1e"),
	} {
		res, err := e.Eval(testCtx(t), map[string]any{"n": bad})
		if !errors.Is(err, ErrEval) {
			t.Errorf("Eval with %s = %+v, %v; want ErrEval", name, res, err)
		}
	}
}

// TestEvalClock shows time.now_ns reads the injected clock.
func TestEvalClock(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	dir := writeTree(t, map[string]string{"p.rego": "package ztp\nallow if time.now_ns() == input.want"})
	e, err := Load(testCtx(t), Options{Paths: []string{dir}, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Eval(testCtx(t), map[string]any{"want": at.UnixNano()})
	if err != nil || !res.Allow {
		t.Errorf("Eval(want=%d) = %+v, %v; want allow from the injected clock", at.UnixNano(), res, err)
	}
}

// TestEvalConcurrent runs many evaluations of one Engine at once (meaningful under -race).
func TestEvalConcurrent(t *testing.T) {
	e := loadEtcd(t)
	inputs := []struct {
		in   map[string]any
		want string
	}{
		{etcdInput(t, aliceID, "human", []string{"sre"}, "/etcdserverpb.KV/Put", map[string]any{"key": "Zm9v"}), DecisionDeny},
		{etcdInput(t, deployerID, "automation", []string{"deployers"}, "/etcdserverpb.KV/Put", map[string]any{"key": "Zm9v"}), DecisionAllow},
	}
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan string, 8*50)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				c := inputs[(g+i)%len(inputs)]
				res, err := e.Eval(ctx, c.in)
				if v := Decide(res, err, Enforce, ""); v.Decision != c.want {
					errs <- v.Decision + " want " + c.want
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
