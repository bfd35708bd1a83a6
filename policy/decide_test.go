package policy

import (
	"errors"
	"testing"
)

func TestDecide(t *testing.T) {
	evalErr := errors.New("policy: evaluation failed: p.rego:3:5: eval_builtin_error: to_number: bad")
	errReason := "policy error: " + evalErr.Error()
	tests := []struct {
		name  string
		res   Result
		err   error
		mode  Mode
		grant string
		want  Verdict
	}{
		{"allow", Result{Allow: true}, nil, Enforce, "", Verdict{Decision: DecisionAllow}},
		{"allow false", Result{}, nil, Enforce, "", Verdict{Decision: DecisionDeny, Reasons: []string{ReasonNotAllowed}}},
		{"allow undefined", Result{AllowUndefined: true}, nil, Enforce, "", Verdict{Decision: DecisionDeny, Reasons: []string{ReasonAllowUndefined}}},
		{"allow with deny", Result{Allow: true, Deny: []string{"b", "a"}}, nil, Enforce, "", Verdict{Decision: DecisionDeny, Reasons: []string{"a", "b"}}},
		{"not allowed with deny reasons", Result{Deny: []string{"x"}}, nil, Enforce, "", Verdict{Decision: DecisionDeny, Reasons: []string{"x"}}},
		{"forbid beats allow", Result{Allow: true, Forbid: []string{"f"}}, nil, Enforce, "", Verdict{Decision: DecisionDeny, Reasons: []string{"f"}}},
		{"forbid reasons only", Result{Deny: []string{"d"}, Forbid: []string{"f2", "f1", "f1"}}, nil, Enforce, "", Verdict{Decision: DecisionDeny, Reasons: []string{"f1", "f2"}}},
		{"error", Result{Allow: true}, evalErr, Enforce, "", Verdict{Decision: DecisionError, Reasons: []string{errReason}}},

		{"grant overrides deny", Result{Allow: true, Deny: []string{"d"}}, nil, Enforce, "bg-1", Verdict{Decision: DecisionAllow, Reasons: []string{"d"}, Grant: "bg-1"}},
		{"grant overrides allow false", Result{}, nil, Enforce, "bg-1", Verdict{Decision: DecisionAllow, Reasons: []string{ReasonNotAllowed}, Grant: "bg-1"}},
		{"grant overrides allow undefined", Result{AllowUndefined: true}, nil, Enforce, "bg-1", Verdict{Decision: DecisionAllow, Reasons: []string{ReasonAllowUndefined}, Grant: "bg-1"}},
		{"grant on an allowed message", Result{Allow: true}, nil, Enforce, "bg-1", Verdict{Decision: DecisionAllow, Reasons: []string{ReasonPolicyAllows}, Grant: "bg-1"}},
		{"grant never overrides forbid", Result{Allow: true, Forbid: []string{"f"}}, nil, Enforce, "bg-1", Verdict{Decision: DecisionDeny, Reasons: []string{"f"}}},
		{"grant never overrides an error", Result{}, evalErr, Enforce, "bg-1", Verdict{Decision: DecisionError, Reasons: []string{errReason}}},

		{"dryrun allow", Result{Allow: true}, nil, DryRun, "", Verdict{Decision: DecisionAllow}},
		{"dryrun deny", Result{Deny: []string{"d"}}, nil, DryRun, "", Verdict{Decision: DecisionDryRunDeny, Reasons: []string{"d"}}},
		{"dryrun forbid", Result{Forbid: []string{"f"}}, nil, DryRun, "", Verdict{Decision: DecisionDryRunDeny, Reasons: []string{"f"}}},
		{"dryrun error", Result{}, evalErr, DryRun, "", Verdict{Decision: DecisionDryRunDeny, Reasons: []string{errReason}}},
		{"dryrun grant", Result{Deny: []string{"d"}}, nil, DryRun, "bg-1", Verdict{Decision: DecisionAllow, Reasons: []string{"d"}, Grant: "bg-1"}},

		{"empty mode enforces", Result{Deny: []string{"d"}}, nil, "", "", Verdict{Decision: DecisionDeny, Reasons: []string{"d"}}},
		{"unknown mode enforces", Result{Deny: []string{"d"}}, nil, "DRYRUN", "", Verdict{Decision: DecisionDeny, Reasons: []string{"d"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(tc.res, tc.err, tc.mode, tc.grant)
			if !verdictEqual(got, tc.want) {
				t.Errorf("Decide(%+v, %v, %q, %q) = %+v, want %+v", tc.res, tc.err, tc.mode, tc.grant, got, tc.want)
			}
			wantForward := tc.want.Decision == DecisionAllow || tc.want.Decision == DecisionDryRunDeny
			if got.Forward() != wantForward {
				t.Errorf("Decide(...).Forward() = %v, want %v", got.Forward(), wantForward)
			}
		})
	}
}

func TestDecideDoesNotAliasResult(t *testing.T) {
	res := Result{Deny: []string{"b", "a"}}
	v := Decide(res, nil, Enforce, "")
	v.Reasons[0] = "changed"
	if res.Deny[0] != "b" || res.Deny[1] != "a" {
		t.Errorf("Decide modified or shares Result.Deny: %v", res.Deny)
	}
}

func TestDeniedMessage(t *testing.T) {
	tests := []struct {
		name    string
		reasons []string
		want    string
	}{
		{"one", []string{"human writes need break-glass"}, "ztp: denied: human writes need break-glass"},
		{"sorted", []string{"z last", "a first", "m middle"}, "ztp: denied: a first; m middle; z last"},
		{"deduplicated", []string{"b", "a", "b"}, "ztp: denied: a; b"},
		{"none", nil, "ztp: denied: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]string(nil), tc.reasons...)
			if got := DeniedMessage(in); got != tc.want {
				t.Errorf("DeniedMessage(%q) = %q, want %q", tc.reasons, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.reasons[i] {
					t.Errorf("DeniedMessage reordered its argument: %q", in)
				}
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"", Enforce, false},
		{"enforce", Enforce, false},
		{"dryrun", DryRun, false},
		{"dry-run", "", true},
		{"Enforce", "", true},
	}
	for _, tc := range tests {
		got, err := ParseMode(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrMode)) {
			t.Errorf("ParseMode(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
