package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ztp-dev/ztp/internal/textcut"
)

// Mode is the policy mode from the configuration (policy.mode).
type Mode string

// Modes. Anything else is treated as Enforce by Decide.
const (
	// Enforce denies what the policy denies.
	Enforce Mode = "enforce"
	// DryRun forwards what the policy would deny and records it as dryrun_deny, for trying
	// a new policy against production traffic.
	DryRun Mode = "dryrun"
)

// ParseMode parses a configured mode; the empty string means Enforce.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", Enforce:
		return Enforce, nil
	case DryRun:
		return DryRun, nil
	}
	return "", fmt.Errorf("%w %q (want %q or %q)", ErrMode, s, Enforce, DryRun)
}

// Decisions, as recorded in the audit log.
const (
	DecisionAllow      = "allow"
	DecisionDeny       = "deny"
	DecisionDryRunDeny = "dryrun_deny"
	DecisionError      = "error"
)

// Reasons Decide uses when the policy gave none of its own.
const (
	// ReasonNotAllowed: allow was false and no deny rule gave a reason.
	ReasonNotAllowed = "not allowed by policy"
	// ReasonAllowUndefined: the policy has no allow rule, or none applied and there is no
	// default.
	ReasonAllowUndefined = "policy: allow undefined"
	// ReasonPolicyAllows: recorded on a break-glass allow when the policy alone would have
	// allowed the message too.
	ReasonPolicyAllows = "policy: allow"
	// ReasonErrorPrefix starts the reason of an evaluation error.
	ReasonErrorPrefix = "policy error: "
)

// Verdict is the decision for one message, ready for the audit record.
type Verdict struct {
	// Decision is DecisionAllow, DecisionDeny, DecisionDryRunDeny or DecisionError.
	Decision string
	// Reasons go into the audit record and, for denials, into the status message
	// (DeniedMessage). On a break-glass allow they are what the policy alone would have
	// said. Sorted.
	Reasons []string
	// Grant is the break-glass grant id when the allow came from a grant.
	Grant string
}

// Forward reports whether the message may be forwarded: it was allowed, or denied only in
// dry-run mode.
func (v Verdict) Forward() bool {
	return v.Decision == DecisionAllow || v.Decision == DecisionDryRunDeny
}

// Decide turns an evaluation into a verdict, in this order:
//
//  1. evalErr != nil: Decision "error", reason "policy error: <error>". A break-glass grant
//     does not help: forbid could not be evaluated, so it cannot be known not to apply.
//  2. forbid non-empty: deny with the forbid reasons. Nothing overrides forbid.
//  3. grantID != "" (the principal holds an active grant whose scope matches the method):
//     allow with Grant set and Reasons what the policy alone would have said: its deny
//     reasons, ReasonNotAllowed or ReasonAllowUndefined, or ReasonPolicyAllows.
//  4. allow and no deny: allow, no reasons.
//  5. otherwise deny, with the deny reasons, or ReasonAllowUndefined / ReasonNotAllowed when
//     there are none.
//
// In DryRun mode every outcome that is not an allow (errors and forbid included) becomes
// Decision "dryrun_deny" with its reasons kept: dry run means the policy never blocks, and
// the audit record still shows what it would have done. Any mode other than DryRun
// enforces.
func Decide(res Result, evalErr error, mode Mode, grantID string) Verdict {
	v := decide(res, evalErr, grantID)
	if mode == DryRun && v.Decision != DecisionAllow {
		v.Decision = DecisionDryRunDeny
	}
	return v
}

func decide(res Result, evalErr error, grantID string) Verdict {
	if evalErr != nil {
		return Verdict{Decision: DecisionError, Reasons: boundReasons([]string{ReasonErrorPrefix + evalErr.Error()})}
	}
	if len(res.Forbid) > 0 {
		return Verdict{Decision: DecisionDeny, Reasons: boundReasons(sortedUnique(res.Forbid))}
	}
	var reasons []string
	switch {
	case len(res.Deny) > 0:
		reasons = boundReasons(sortedUnique(res.Deny))
	case res.Allow:
	case res.AllowUndefined:
		reasons = []string{ReasonAllowUndefined}
	default:
		reasons = []string{ReasonNotAllowed}
	}
	if grantID != "" {
		if reasons == nil {
			reasons = []string{ReasonPolicyAllows}
		}
		return Verdict{Decision: DecisionAllow, Reasons: reasons, Grant: grantID}
	}
	if reasons == nil {
		return Verdict{Decision: DecisionAllow}
	}
	return Verdict{Decision: DecisionDeny, Reasons: reasons}
}

// Bounds of a verdict's reasons. A policy's reasons may quote the request
// ("route %s is not a unicast prefix"), whose strings the caller sizes up to
// the message limit, or name one thing per element of a 10,000-node request.
// The audit record, the refusal budgets' summaries and the client's status
// message carry the reasons, so they are bounded where they are made: each
// reason to maxReasonBytes (cut on a UTF-8 boundary, marked), at most
// maxReasons of them, then one saying how many more there were.
const (
	maxReasonBytes = 1024
	maxReasons     = 32
	reasonCutMark  = textcut.Mark
)

func boundReasons(rs []string) []string {
	if len(rs) <= maxReasons && !slices.ContainsFunc(rs, func(r string) bool { return len(r) > maxReasonBytes }) {
		return rs
	}
	out := make([]string, 0, min(len(rs), maxReasons+1))
	for i, r := range rs {
		if i == maxReasons {
			out = append(out, fmt.Sprintf("… and %d more reasons", len(rs)-maxReasons))
			break
		}
		out = append(out, textcut.Cut(r, maxReasonBytes))
	}
	return out
}

// DeniedMessage renders the PERMISSION_DENIED status message: "ztp: denied: " followed by the
// reasons, sorted and deduplicated, joined by "; ".
func DeniedMessage(reasons []string) string {
	return "ztp: denied: " + strings.Join(sortedUnique(reasons), "; ")
}

func sortedUnique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// Explain says which step of Decide produced its verdict for the same arguments, for
// people reading a decision (ztpctl policy eval).
func Explain(res Result, evalErr error, mode Mode, grantID string) string {
	var why string
	switch {
	case evalErr != nil:
		why = "the policy failed to evaluate, and an error denies; break-glass cannot override it"
	case len(res.Forbid) > 0:
		why = "forbid matched; nothing overrides forbid, not even break-glass"
	case grantID != "" && (len(res.Deny) > 0 || !res.Allow):
		return "break-glass grant " + grantID + " overrides what the policy alone says (its reasons are kept); forbid did not match"
	case grantID != "":
		return "the policy allows, and break-glass grant " + grantID + " is recorded with the call"
	case len(res.Deny) > 0:
		why = "deny matched; an active break-glass grant would override it"
	case res.AllowUndefined:
		why = "allow is undefined: no allow rule applied and the policy has no default"
	case !res.Allow:
		why = "allow is false"
	default:
		return "allow is true and neither deny nor forbid matched"
	}
	if mode == DryRun {
		why += "; in dryrun mode the message is forwarded anyway and recorded as dryrun_deny"
	}
	return why
}
