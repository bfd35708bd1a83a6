package identity

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// Kinds of principal, as policies see them in input.principal.kind.
const (
	KindAutomation = "automation"
	KindHuman      = "human"
)

// AuthnMTLS is the Principal.Authn value of callers identified by their
// client certificate.
const AuthnMTLS = "mtls"

// Principal is an authenticated, classified caller. The json names are the
// ones policies read (input.principal) and audit records store.
type Principal struct {
	ID     string   `json:"id"`     // "spiffe://example.org/ns/prod/sa/deployer" or "cn:alice"
	Kind   string   `json:"kind"`   // KindAutomation or KindHuman
	Groups []string `json:"groups"` // never nil, so policies iterate an empty array, not null
	Authn  string   `json:"authn"`  // how the caller proved the id, e.g. AuthnMTLS
	// Expires is the first instant at which the credential that proved the id
	// no longer counts (a token's exp plus the leeway, just after a client
	// certificate's NotAfter); zero when unknown. Expired is the one rule that
	// reads it: a long-lived stream outlives its handshake, so the proxy ends
	// calls at this instant.
	Expires time.Time `json:"-"`
	// Person names the human or service behind the id when a principal rule
	// says so (Rule.Person); "" means the id itself. One person may hold
	// several ids (a SPIFFE certificate and an OIDC token): break-glass
	// compares persons, so nobody approves their own request with a second id.
	Person string `json:"-"`
}

// personWildcard in Rule.Person stands for the text the rule's single '*'
// matched.
const personWildcard = "{*}"

// Rule classifies the principal ids matching Match, a glob with path.Match
// semantics: '*' and '?' do not cross '/', so "spiffe://example.org/ns/*"
// matches "spiffe://example.org/ns/a" but not "spiffe://example.org/ns/a/b".
type Rule struct {
	Match  string   `yaml:"match"`
	Kind   string   `yaml:"kind"`
	Groups []string `yaml:"groups"`
	// Person names who is behind the matching ids: a literal ("carol"), or a
	// template in which "{*}" is the text matched by Match's only '*'
	// ("spiffe://example.org/user/*" with person "{*}@example.org" makes
	// spiffe://example.org/user/alice the person alice@example.org, the id an
	// OIDC token with principal_claim email gives her). Empty: the id itself.
	Person string `yaml:"person"`
}

// Classifier maps principal ids to principals with an ordered rule list.
// It is immutable and safe for concurrent use.
type Classifier struct {
	rules []Rule
}

// NewClassifier validates rules and returns a classifier that applies them
// in order. Errors name the offending key, e.g.
// "identity.principals[2].match: ...", and wrap ErrInvalidRule. An empty
// rule list is valid and rejects everyone.
func NewClassifier(rules []Rule) (*Classifier, error) {
	own := make([]Rule, len(rules))
	for i, r := range rules {
		key := fmt.Sprintf("identity.principals[%d]", i)
		if r.Match == "" {
			return nil, &ruleError{key: key + ".match", reason: "must not be empty"}
		}
		// path.Match reports a malformed pattern whatever the name.
		if _, err := path.Match(r.Match, ""); err != nil {
			return nil, &ruleError{key: key + ".match", reason: fmt.Sprintf("invalid glob %q: %v", r.Match, err), err: err}
		}
		if r.Kind != KindAutomation && r.Kind != KindHuman {
			return nil, &ruleError{key: key + ".kind", reason: fmt.Sprintf("must be %q or %q, got %q", KindAutomation, KindHuman, r.Kind)}
		}
		for j, g := range r.Groups {
			if g == "" {
				return nil, &ruleError{key: fmt.Sprintf("%s.groups[%d]", key, j), reason: "must not be empty"}
			}
		}
		if strings.Contains(r.Person, personWildcard) {
			if strings.Count(r.Match, "*") != 1 || strings.ContainsAny(r.Match, "?[\\") {
				return nil, &ruleError{key: key + ".person", reason: fmt.Sprintf("%s needs a match with exactly one '*' and no '?', '[' or '\\', got %q", personWildcard, r.Match)}
			}
		}
		// Copy so a caller mutating its slice cannot change a running classifier.
		own[i] = Rule{Match: r.Match, Kind: r.Kind, Groups: append([]string(nil), r.Groups...), Person: r.Person}
	}
	return &Classifier{rules: own}, nil
}

// Classify returns the principal for id from the first matching rule, with
// Authn set to authn. It returns false when no rule matches (or id is
// empty): the caller must then be refused. The returned Groups slice is the
// caller's own.
func (c *Classifier) Classify(id, authn string) (Principal, bool) {
	if c == nil || id == "" {
		return Principal{}, false
	}
	for _, r := range c.rules {
		// Patterns were validated in NewClassifier, so the error is always nil.
		if ok, _ := path.Match(r.Match, id); ok {
			return Principal{
				ID:     id,
				Kind:   r.Kind,
				Groups: append(make([]string, 0, len(r.Groups)), r.Groups...),
				Authn:  authn,
				Person: r.person(id),
			}, true
		}
	}
	return Principal{}, false
}

// person renders Rule.Person for id, which matched r.Match.
func (r Rule) person(id string) string {
	if !strings.Contains(r.Person, personWildcard) {
		return r.Person
	}
	star := strings.IndexByte(r.Match, '*')
	prefix, suffix := r.Match[:star], r.Match[star+1:]
	return strings.ReplaceAll(r.Person, personWildcard, id[len(prefix):len(id)-len(suffix)])
}

// ruleError names the config key at fault and matches ErrInvalidRule.
type ruleError struct {
	key    string
	reason string
	err    error // underlying cause, e.g. path.ErrBadPattern
}

func (e *ruleError) Error() string        { return e.key + ": " + e.reason }
func (e *ruleError) Is(target error) bool { return target == ErrInvalidRule }
func (e *ruleError) Unwrap() error        { return e.err }
