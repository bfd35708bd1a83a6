package policy

import (
	"strings"
	"testing"
)

func TestExplainReportsEachRuleOnItsOwn(t *testing.T) {
	e := loadPolicy(t, `package ztp

default allow := false

allow if input.ok

allow if input.n > 10

big if input.n > 10

# Conflicting values for one input: an evaluation error that must not hide the other rules.
x := 1 if input.conflict
x := 2 if input.conflict

f(a) := a + 1
`, nil)
	ex, err := e.Explain(testCtx(t), map[string]any{"ok": true, "n": 3, "conflict": true}, ExplainNone)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]RuleValue{}
	for _, r := range ex.Rules {
		got[r.Name] = r
	}
	if r := got["allow"]; !r.Defined || r.Value != true {
		t.Errorf("allow = %+v", r)
	}
	if r := got["big"]; r.Defined || r.Error != "" {
		t.Errorf("big = %+v, want undefined", r)
	}
	if r := got["x"]; r.Error == "" {
		t.Errorf("x = %+v, want an error", r)
	}
	if _, ok := got["f"]; ok {
		t.Errorf("function f is listed")
	}
	if ex.Trace != "" {
		t.Errorf("a trace without asking for one:\n%s", ex.Trace)
	}
	// The second allow rule's body fails, and the fails trace shows where.
	ex, err = e.Explain(testCtx(t), map[string]any{"n": 3}, ExplainFails)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ex.Trace, "Fail gt(") {
		t.Errorf("fails trace:\n%s", ex.Trace)
	}
	if _, err := e.Explain(testCtx(t), nil, "verbose"); err == nil {
		t.Errorf("unknown level accepted")
	}
}
