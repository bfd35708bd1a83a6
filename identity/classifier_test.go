package identity

import (
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var testRules = []Rule{
	{Match: "spiffe://example.org/ns/prod/sa/break-glass-bot", Kind: KindAutomation, Groups: []string{"breakglass-bots"}},
	{Match: "spiffe://example.org/ns/prod/sa/*", Kind: KindAutomation, Groups: []string{"deployers"}},
	{Match: "spiffe://example.org/user/*", Kind: KindHuman, Groups: []string{"sre", "oncall"}},
	{Match: "cn:*", Kind: KindHuman},
}

func TestClassify(t *testing.T) {
	c, err := NewClassifier(testRules)
	if err != nil {
		t.Fatalf("NewClassifier: %v", err)
	}
	tests := []struct {
		name   string
		id     string
		want   Principal
		wantOK bool
	}{
		{
			name:   "first match wins over a later, broader rule",
			id:     "spiffe://example.org/ns/prod/sa/break-glass-bot",
			want:   Principal{ID: "spiffe://example.org/ns/prod/sa/break-glass-bot", Kind: KindAutomation, Groups: []string{"breakglass-bots"}, Authn: AuthnMTLS},
			wantOK: true,
		},
		{
			name:   "glob",
			id:     "spiffe://example.org/ns/prod/sa/deployer",
			want:   Principal{ID: "spiffe://example.org/ns/prod/sa/deployer", Kind: KindAutomation, Groups: []string{"deployers"}, Authn: AuthnMTLS},
			wantOK: true,
		},
		{
			name:   "human",
			id:     "spiffe://example.org/user/alice",
			want:   Principal{ID: "spiffe://example.org/user/alice", Kind: KindHuman, Groups: []string{"sre", "oncall"}, Authn: AuthnMTLS},
			wantOK: true,
		},
		{
			name:   "rule without groups gives empty, non-nil groups",
			id:     "cn:alice",
			want:   Principal{ID: "cn:alice", Kind: KindHuman, Groups: []string{}, Authn: AuthnMTLS},
			wantOK: true,
		},
		{name: "star does not cross slash", id: "spiffe://example.org/ns/prod/sa/deployer/extra"},
		{name: "other namespace", id: "spiffe://example.org/ns/dev/sa/deployer"},
		{name: "other trust domain", id: "spiffe://evil.org/user/alice"},
		{name: "empty id", id: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.Classify(tt.id, AuthnMTLS)
			if ok != tt.wantOK {
				t.Fatalf("Classify(%q) ok = %v, want %v (principal %+v)", tt.id, ok, tt.wantOK, got)
			}
			if !ok {
				if got.ID != "" || got.Kind != "" || got.Groups != nil {
					t.Errorf("Classify(%q) = %+v on no match, want zero Principal", tt.id, got)
				}
				return
			}
			if got.ID != tt.want.ID || got.Kind != tt.want.Kind || got.Authn != tt.want.Authn ||
				!slices.Equal(got.Groups, tt.want.Groups) || got.Groups == nil {
				t.Errorf("Classify(%q) = %+v, want %+v", tt.id, got, tt.want)
			}
		})
	}
}

func TestClassifyDoesNotAlias(t *testing.T) {
	rules := []Rule{{Match: "cn:*", Kind: KindHuman, Groups: []string{"sre", "oncall"}}}
	c, err := NewClassifier(rules)
	if err != nil {
		t.Fatal(err)
	}
	// The caller's rules changing after construction must not matter.
	rules[0].Groups[0] = "root"
	rules[0].Match = "cn:nobody"

	p, ok := c.Classify("cn:alice", AuthnMTLS)
	if !ok {
		t.Fatalf("Classify(cn:alice) ok = false after caller mutated its rules")
	}
	// Appending within capacity and overwriting must not reach the rule.
	p.Groups = append(p.Groups[:1], "admins")
	p.Groups[0] = "root"
	again, _ := c.Classify("cn:bob", AuthnMTLS)
	if want := []string{"sre", "oncall"}; !slices.Equal(again.Groups, want) {
		t.Fatalf("groups after mutating an earlier result = %v, want %v", again.Groups, want)
	}
}

func TestNewClassifierErrors(t *testing.T) {
	ok := Rule{Match: "cn:*", Kind: KindHuman}
	tests := []struct {
		name       string
		rules      []Rule
		wantPrefix string
		wantCause  error
	}{
		{"bad glob at index 2", []Rule{ok, ok, {Match: "spiffe://example.org/[", Kind: KindHuman}}, "identity.principals[2].match: ", path.ErrBadPattern},
		{"bad glob trailing backslash", []Rule{{Match: `cn:\`, Kind: KindHuman}}, "identity.principals[0].match: ", path.ErrBadPattern},
		{"empty match", []Rule{ok, {Kind: KindHuman}}, "identity.principals[1].match: ", nil},
		{"bad kind", []Rule{ok, {Match: "cn:*", Kind: "robot"}}, "identity.principals[1].kind: ", nil},
		{"missing kind", []Rule{{Match: "cn:*"}}, "identity.principals[0].kind: ", nil},
		{"kind is case sensitive", []Rule{{Match: "cn:*", Kind: "Human"}}, "identity.principals[0].kind: ", nil},
		{"empty group", []Rule{{Match: "cn:*", Kind: KindHuman, Groups: []string{"sre", ""}}}, "identity.principals[0].groups[1]: ", nil},
		{"person {*} with two stars", []Rule{{Match: "spiffe://*/user/*", Kind: KindHuman, Person: "{*}"}}, "identity.principals[0].person: ", nil},
		{"person {*} without a star", []Rule{{Match: "cn:alice", Kind: KindHuman, Person: "{*}"}}, "identity.principals[0].person: ", nil},
		{"person {*} with a class", []Rule{{Match: "cn:[ab]*", Kind: KindHuman, Person: "{*}"}}, "identity.principals[0].person: ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClassifier(tt.rules)
			if err == nil {
				t.Fatalf("NewClassifier(%+v) = %v, nil; want error", tt.rules, c)
			}
			if !errors.Is(err, ErrInvalidRule) {
				t.Errorf("error %q does not wrap ErrInvalidRule", err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantPrefix) {
				t.Errorf("error %q, want prefix %q", err, tt.wantPrefix)
			}
			if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
				t.Errorf("error %q does not wrap %v", err, tt.wantCause)
			}
		})
	}
}

func TestNewClassifierEmptyRejectsEveryone(t *testing.T) {
	c, err := NewClassifier(nil)
	if err != nil {
		t.Fatalf("NewClassifier(nil): %v", err)
	}
	if p, ok := c.Classify("cn:alice", AuthnMTLS); ok {
		t.Fatalf("empty classifier Classify(cn:alice) = %+v, true; want no match", p)
	}
	var nilC *Classifier
	if p, ok := nilC.Classify("cn:alice", AuthnMTLS); ok {
		t.Fatalf("nil classifier Classify(cn:alice) = %+v, true; want no match", p)
	}
}

func TestRuleYAML(t *testing.T) {
	const doc = `
- match: "spiffe://example.org/ns/prod/sa/*"
  kind: automation
  groups: [deployers]
- match: "cn:*"
  kind: human
`
	var rules []Rule
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := []Rule{
		{Match: "spiffe://example.org/ns/prod/sa/*", Kind: KindAutomation, Groups: []string{"deployers"}},
		{Match: "cn:*", Kind: KindHuman},
	}
	if len(rules) != len(want) {
		t.Fatalf("decoded %+v, want %+v", rules, want)
	}
	for i := range want {
		if rules[i].Match != want[i].Match || rules[i].Kind != want[i].Kind || !slices.Equal(rules[i].Groups, want[i].Groups) {
			t.Errorf("rule %d = %+v, want %+v", i, rules[i], want[i])
		}
	}
}

// TestClassifyPerson: a rule's person names who is behind an id, so that one
// person's certificate and token are one person for break-glass approvals.
func TestClassifyPerson(t *testing.T) {
	c, err := NewClassifier([]Rule{
		{Match: "spiffe://example.org/user/*", Kind: KindHuman, Person: "{*}@example.org"},
		{Match: "*@example.org", Kind: KindHuman, Person: "{*}@example.org"},
		{Match: "spiffe://example.org/lead/carol", Kind: KindHuman, Person: "carol@example.org"},
		{Match: "cn:*", Kind: KindHuman},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ id, person string }{
		{"spiffe://example.org/user/alice", "alice@example.org"},
		{"alice@example.org", "alice@example.org"},
		{"spiffe://example.org/lead/carol", "carol@example.org"},
		{"cn:bob", ""},
	} {
		p, ok := c.Classify(tt.id, AuthnMTLS)
		if !ok || p.Person != tt.person {
			t.Errorf("Classify(%q) = %+v (ok %v); want person %q", tt.id, p, ok, tt.person)
		}
	}
}
