package policy

import (
	"errors"
	"testing"
)

const budgetPolicy = `package ztp

default allow := false

allow if input.cost <= data.ztp_config.budgets["delete:"].limit
`

const budgetPolicyTest = `package ztp_test

import data.ztp

test_within_the_limit if ztp.allow with input as {"cost": 1} with data.ztp_config as {"budgets": {"delete:": {"limit": 5}}}
`

func budgetConfig(limit float64) map[string]any {
	return map[string]any{"budgets": map[string]any{"delete:": map[string]any{"limit": limit, "per": "1h0m0s", "per_seconds": 3600.0}}}
}

func TestConfigData(t *testing.T) {
	dir := writeTree(t, map[string]string{"policy.rego": budgetPolicy, "policy_test.rego": budgetPolicyTest})
	load := func(cfg map[string]any) *Engine {
		t.Helper()
		e, _, err := LoadTested(testCtx(t), Options{Paths: []string{dir}, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	without, ten, hundred := load(nil), load(budgetConfig(10)), load(budgetConfig(100))

	for _, tc := range []struct {
		e     *Engine
		cost  int
		allow bool
	}{{ten, 10, true}, {ten, 11, false}, {hundred, 11, true}, {without, 1, false}} {
		res, err := tc.e.Eval(testCtx(t), map[string]any{"cost": tc.cost})
		if err != nil {
			t.Fatal(err)
		}
		if res.Allow != tc.allow {
			t.Errorf("cost %d: allow = %v, want %v", tc.cost, res.Allow, tc.allow)
		}
	}
	// The limits are part of what decides: a change to them is a new version.
	if without.Version() == ten.Version() || ten.Version() == hundred.Version() {
		t.Errorf("versions do not tell the configs apart: %s %s %s", without.Version(), ten.Version(), hundred.Version())
	}
	if again := load(budgetConfig(10)); again.Version() != ten.Version() {
		t.Errorf("the same config gave another version")
	}
	// Without config data the version is the files' alone, as before data.ztp_config existed.
	plain, err := Load(testCtx(t), Options{Paths: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Version() != without.Version() {
		t.Errorf("Load without Config: version %s, LoadTested %s", plain.Version(), without.Version())
	}

	// Policy tests see it too (RunTests, as ztpctl policy test --config).
	rep, err := RunTests(testCtx(t), TestOptions{Paths: []string{writeTree(t, map[string]string{
		"policy.rego": budgetPolicy,
		"policy_test.rego": `package ztp_test

import data.ztp

test_from_config if ztp.allow with input as {"cost": 7}
`})}, Config: budgetConfig(7)})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed() || rep.Count(TestPass) != 1 {
		t.Errorf("a test reading data.ztp_config from Config: %+v", rep.Results)
	}
}

func TestConfigDataCannotBeSetByAFile(t *testing.T) {
	dir := writeTree(t, map[string]string{"policy.rego": budgetPolicy, "data.json": `{"ztp_config": {"budgets": {}}}`})
	if _, err := Load(testCtx(t), Options{Paths: []string{dir}, Config: budgetConfig(1)}); !errors.Is(err, ErrData) {
		t.Errorf("Load = %v, want ErrData", err)
	}
}
