package breakglass

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/ztp-dev/ztp/identity"
)

// State is where a grant is in its life.
type State string

// Grant states.
const (
	StatePending State = "pending" // waiting for approvals
	StateActive  State = "active"  // usable until Expires
	StateExpired State = "expired" // ran out (or was never approved in time)
	StateRevoked State = "revoked" // ended early by its requester or an approver
	StateDenied  State = "denied"  // refused by an approver
)

// ParseState checks a state name ("" is allowed and means any state).
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case "", StatePending, StateActive, StateExpired, StateRevoked, StateDenied:
		return st, nil
	}
	return "", fmt.Errorf("%w: unknown state %q (pending, active, expired, revoked, denied)", ErrInvalidRequest, s)
}

// Ended reports whether no further change can happen to a grant in s.
func (s State) Ended() bool {
	return s == StateExpired || s == StateRevoked || s == StateDenied
}

// Events: the state changes that are audited and notified.
const (
	EventRequested = "requested"
	EventApproved  = "approved"
	EventDenied    = "denied"
	EventActivated = "activated"
	EventExpired   = "expired"
	EventRevoked   = "revoked"
)

// AllMethods is the scope of a grant requested without one: every
// "/package.Service/Method" (path.Match's '*' does not cross '/').
const AllMethods = "/*/*"

// Limits on what a request may carry; they keep audit records and listings
// readable and bounded.
const (
	maxReasonLen  = 1024
	maxTicketLen  = 256
	maxCommentLen = 1024
	maxScopes     = 32
	maxScopeLen   = 256
)

// Approval is one approver's consent.
type Approval struct {
	Approver string `json:"approver"`
	// Person is who the approver is when a principal rule names it
	// (identity.Principal.Person); "" means the approver id itself.
	Person  string    `json:"person,omitempty"`
	Time    time.Time `json:"time"`
	Comment string    `json:"comment,omitempty"`
}

// Grant is a break-glass grant. The JSON form is what is stored in bbolt and
// sent to the webhook.
type Grant struct {
	ID        string
	Requester string
	// RequesterPerson is who the requester is when a principal rule names it;
	// "" means the requester id itself. Nobody approves or denies a grant
	// their own person requested, whichever of their ids they use.
	RequesterPerson   string
	Reason            string
	Ticket            string
	Scope             []string // method globs (path.Match)
	Duration          time.Duration
	State             State
	Approvals         []Approval
	ApprovalsRequired int
	Created           time.Time
	// ApproveBy is when a pending grant lapses unapproved.
	ApproveBy time.Time
	Activated time.Time
	Expires   time.Time // set when activated
	Ended     time.Time // when it expired, was revoked or denied
	EndedBy   string    // who revoked or denied it
}

// grantJSON is Grant's stored form: durations as Go duration strings, zero
// times left out.
type grantJSON struct {
	ID                string     `json:"id"`
	Requester         string     `json:"requester"`
	RequesterPerson   string     `json:"requester_person,omitempty"`
	Reason            string     `json:"reason"`
	Ticket            string     `json:"ticket,omitempty"`
	Scope             []string   `json:"scope"`
	Duration          string     `json:"duration"`
	State             State      `json:"state"`
	Approvals         []Approval `json:"approvals"`
	ApprovalsRequired int        `json:"approvals_required"`
	Created           time.Time  `json:"created"`
	ApproveBy         time.Time  `json:"approve_by,omitzero"`
	Activated         time.Time  `json:"activated,omitzero"`
	Expires           time.Time  `json:"expires,omitzero"`
	Ended             time.Time  `json:"ended,omitzero"`
	EndedBy           string     `json:"ended_by,omitempty"`
}

// MarshalJSON encodes g in its stored and notified form.
func (g Grant) MarshalJSON() ([]byte, error) {
	approvals := g.Approvals
	if approvals == nil {
		approvals = []Approval{}
	}
	return json.Marshal(grantJSON{
		ID: g.ID, Requester: g.Requester, RequesterPerson: g.RequesterPerson, Reason: g.Reason, Ticket: g.Ticket,
		Scope: g.Scope, Duration: g.Duration.String(), State: g.State,
		Approvals: approvals, ApprovalsRequired: g.ApprovalsRequired,
		Created: g.Created, ApproveBy: g.ApproveBy, Activated: g.Activated,
		Expires: g.Expires, Ended: g.Ended, EndedBy: g.EndedBy,
	})
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (g *Grant) UnmarshalJSON(b []byte) error {
	var j grantJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d, err := time.ParseDuration(j.Duration)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	if _, err := ParseState(string(j.State)); err != nil || j.State == "" {
		return fmt.Errorf("state %q unknown", j.State)
	}
	*g = Grant{
		ID: j.ID, Requester: j.Requester, RequesterPerson: j.RequesterPerson, Reason: j.Reason, Ticket: j.Ticket,
		Scope: j.Scope, Duration: d, State: j.State,
		Approvals: j.Approvals, ApprovalsRequired: j.ApprovalsRequired,
		Created: j.Created, ApproveBy: j.ApproveBy, Activated: j.Activated,
		Expires: j.Expires, Ended: j.Ended, EndedBy: j.EndedBy,
	}
	return nil
}

// clone returns a deep copy, so a change can be prepared without touching
// the stored grant until it is committed.
func (g *Grant) clone() *Grant {
	c := *g
	c.Scope = slices.Clone(g.Scope)
	c.Approvals = slices.Clone(g.Approvals)
	return &c
}

// at returns the state g is in at now: a grant past its expiry (or a pending
// one past its approval deadline) is expired even before the sweeper recorded
// it, and the instant it ended is that deadline.
func (g *Grant) at(now time.Time) (State, time.Time) {
	switch {
	case g.State == StateActive && !now.Before(g.Expires):
		return StateExpired, g.Expires
	case g.State == StatePending && !g.ApproveBy.IsZero() && !now.Before(g.ApproveBy):
		return StateExpired, g.ApproveBy
	}
	return g.State, g.Ended
}

// view is g as a caller at now sees it.
func (g *Grant) view(now time.Time) Grant {
	c := *g.clone()
	c.State, c.Ended = g.at(now)
	return c
}

// ApprovedBy reports whether id approved g.
func (g *Grant) ApprovedBy(id string) bool {
	for _, a := range g.Approvals {
		if a.Approver == id {
			return true
		}
	}
	return false
}

// requestedBy reports whether p is the person who requested g, under any id:
// by the person stored with the grant, or by the one the current rules
// (personOf, may be nil) give either id.
func (g *Grant) requestedBy(p identity.Principal, personOf func(string) string) bool {
	return samePerson(g.Requester, g.RequesterPerson, p, personOf)
}

// approvedByPerson reports whether p's person already approved g, under any id.
func (g *Grant) approvedByPerson(p identity.Principal, personOf func(string) string) bool {
	for _, a := range g.Approvals {
		if samePerson(a.Approver, a.Person, p, personOf) {
			return true
		}
	}
	return false
}

// countedApprovals is how many approvals count towards ApprovalsRequired under
// the person rules in force: one per person, none by the requester's person.
// An approval accepted before a rule linked its id to the requester (or to an
// earlier approver) stops counting once the rule exists.
func (g *Grant) countedApprovals(personOf func(string) string) int {
	n := 0
	for i, a := range g.Approvals {
		p := identity.Principal{ID: a.Approver, Person: a.Person}
		if samePerson(g.Requester, g.RequesterPerson, p, personOf) {
			continue
		}
		if !slices.ContainsFunc(g.Approvals[:i], func(b Approval) bool { return samePerson(b.Approver, b.Person, p, personOf) }) {
			n++
		}
	}
	return n
}

// samePerson reports whether the id with its stored person and p could be one
// person: any of the first's keys (the id, the stored person, the person the
// current rules give the id) equals any of p's (its id, its person, the person
// the current rules give its id).
func samePerson(id, stored string, p identity.Principal, personOf func(string) string) bool {
	keys := []string{id, stored}
	theirs := []string{p.ID, p.Person}
	if personOf != nil {
		keys = append(keys, personOf(id))
		theirs = append(theirs, personOf(p.ID))
	}
	for _, k := range keys {
		if k != "" && slices.Contains(theirs, k) {
			return true
		}
	}
	return false
}

// Covers reports whether method (a full gRPC method name) is in g's scope.
func (g *Grant) Covers(method string) bool { return covers(g.Scope, method) }

func covers(scope []string, method string) bool {
	for _, p := range scope {
		// Patterns were validated when the grant was requested.
		if ok, _ := path.Match(p, method); ok {
			return true
		}
	}
	return false
}

// GrantRequest is what a human asks for.
type GrantRequest struct {
	Reason   string
	Ticket   string
	Duration time.Duration // 0: the maximum
	Scope    []string      // method globs; empty: every method
}

// normalize validates r against the maximum duration and fills defaults.
func (r GrantRequest) normalize(maxDuration time.Duration) (GrantRequest, error) {
	r.Reason = strings.TrimSpace(r.Reason)
	r.Ticket = strings.TrimSpace(r.Ticket)
	switch {
	case r.Reason == "":
		return r, fmt.Errorf("%w: a reason is required (what is broken and why you need access)", ErrInvalidRequest)
	case len(r.Reason) > maxReasonLen:
		return r, fmt.Errorf("%w: reason longer than %d bytes", ErrInvalidRequest, maxReasonLen)
	case !printable(r.Reason):
		return r, fmt.Errorf("%w: reason contains control characters", ErrInvalidRequest)
	case len(r.Ticket) > maxTicketLen:
		return r, fmt.Errorf("%w: ticket longer than %d bytes", ErrInvalidRequest, maxTicketLen)
	case !printable(r.Ticket):
		return r, fmt.Errorf("%w: ticket contains control characters", ErrInvalidRequest)
	}
	if r.Duration == 0 {
		r.Duration = maxDuration
	}
	switch {
	case r.Duration < 0:
		return r, fmt.Errorf("%w: duration %s must be positive", ErrInvalidRequest, r.Duration)
	case r.Duration%time.Second != 0:
		return r, fmt.Errorf("%w: duration %s must be whole seconds", ErrInvalidRequest, r.Duration)
	case r.Duration > maxDuration:
		return r, fmt.Errorf("%w: duration %s exceeds breakglass.max_duration %s; ask for at most %s", ErrInvalidRequest, r.Duration, maxDuration, maxDuration)
	}
	scope, err := normalizeScope(r.Scope)
	if err != nil {
		return r, err
	}
	r.Scope = scope
	return r, nil
}

func normalizeScope(in []string) ([]string, error) {
	if len(in) == 0 {
		return []string{AllMethods}, nil
	}
	if len(in) > maxScopes {
		return nil, fmt.Errorf("%w: more than %d scope globs", ErrInvalidRequest, maxScopes)
	}
	out := make([]string, 0, len(in))
	for _, p := range in {
		p = strings.TrimSpace(p)
		if err := checkScope(p); err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// checkScope insists on "/package.Service/Method" globs: a pattern without
// exactly two '/' could never match a full method name, since '*' does not
// cross '/', and a grant that silently covers nothing helps nobody at 3 a.m.
func checkScope(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty scope glob", ErrInvalidRequest)
	case len(p) > maxScopeLen:
		return fmt.Errorf("%w: scope glob longer than %d bytes", ErrInvalidRequest, maxScopeLen)
	case !printable(p):
		return fmt.Errorf("%w: scope glob %q contains control characters", ErrInvalidRequest, p)
	case p[0] != '/' || strings.Count(p, "/") != 2 || strings.HasSuffix(p, "/"):
		return fmt.Errorf("%w: scope %q is not a method glob of the form /package.Service/Method (e.g. /etcdserverpb.Maintenance/*)", ErrInvalidRequest, p)
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("%w: scope %q: %v", ErrInvalidRequest, p, err)
	}
	return nil
}

func checkComment(c string) (string, error) {
	c = strings.TrimSpace(c)
	if len(c) > maxCommentLen {
		return "", fmt.Errorf("%w: comment longer than %d bytes", ErrInvalidRequest, maxCommentLen)
	}
	if !printable(c) {
		return "", fmt.Errorf("%w: comment contains control characters", ErrInvalidRequest)
	}
	return c, nil
}

func printable(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r == unicode.ReplacementChar || !unicode.IsPrint(r) && r != ' ' }) < 0
}
