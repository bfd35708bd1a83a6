package audit

import (
	"encoding/json"
	"fmt"
	"time"
)

// Record types.
const (
	TypeRequest    = "request"    // a decision about one client message
	TypeOutcome    = "outcome"    // how a call ended; Ref names its decision record
	TypeBreakglass = "breakglass" // a break-glass grant changed state
	TypePolicy     = "policy"     // a policy was loaded, reloaded or rejected
	TypeSystem     = "system"     // proxy lifecycle and other operational events
)

// Decisions.
const (
	DecisionAllow       = "allow"
	DecisionDeny        = "deny"
	DecisionDryrunDeny  = "dryrun_deny"
	DecisionRatelimited = "ratelimited"
	DecisionError       = "error"
)

// Principal is the audited identity. It is a frozen copy, independent of the
// identity package, so that the record format does not change when identity
// does.
type Principal struct {
	ID     string   `json:"id"`
	Kind   string   `json:"kind"` // automation | human
	Groups []string `json:"groups"`
	Authn  string   `json:"authn"` // mtls | jwt
}

// Record is one audit log entry. Append fills Seq, Time (when zero),
// PrevHash and Hash; callers set the rest.
//
// Most fields are omitted from the encoding when they are zero. Two groups
// are always present on one record type, because there zero is meaningful:
// message_index and request_decoded on "request" records, and duration_ms,
// messages_in and messages_out on "outcome" records.
type Record struct {
	Seq       uint64     `json:"seq"`
	Time      time.Time  `json:"time"` // UTC, RFC 3339 with exactly nine fractional digits
	Type      string     `json:"type"`
	Principal *Principal `json:"principal,omitempty"`
	Peer      string     `json:"peer,omitempty"`
	Method    string     `json:"method,omitempty"`
	Upstream  string     `json:"upstream,omitempty"`

	// MessageIndex is the 0-based index of the client message within its
	// call (always encoded on request records).
	MessageIndex int `json:"message_index"`
	// Request is the decoded message as JSON. Append stores a canonical,
	// redacted copy; the caller's bytes are not modified. JSON null is the
	// same as absent.
	Request json.RawMessage `json:"request,omitempty"`
	// RequestDecoded reports whether Request holds the decoded message
	// (always encoded on request records).
	RequestDecoded bool `json:"request_decoded"`
	// RequestBytes and RequestSHA256 are the size and the SHA-256 (lower-case
	// hex) of the exact message bytes the proxy forwarded or refused. When
	// RequestSHA256 is set, request_bytes is always encoded (0 for an empty
	// message); records written before these fields existed have neither.
	RequestBytes  uint64 `json:"request_bytes,omitempty"`
	RequestSHA256 string `json:"request_sha256,omitempty"`
	// RequestTruncated replaces Request when the message's canonical, redacted
	// rendering is longer than Options.MaxRequestBytes: it holds the first
	// bytes of that rendering as a string (cut on a UTF-8 boundary), so that
	// nobody mistakes a partial rendering for the request. Only the store
	// writes it (Append refuses a record that sets it).
	RequestTruncated string `json:"request_truncated,omitempty"`
	// RequestUnknownFields lists where the message had fields its
	// descriptors do not know, as the policy input's request_unknown_fields
	// does, so that a replay sees them too. Optional: absent when there were
	// none, and in records written before it existed.
	RequestUnknownFields []string `json:"request_unknown_fields,omitempty"`

	// Metadata is client request metadata chosen by the proxy. Redaction
	// does not apply to it: the proxy must not pass secrets here.
	Metadata        map[string][]string `json:"metadata,omitempty"`
	Justification   string              `json:"justification,omitempty"`
	Ticket          string              `json:"ticket,omitempty"`
	Decision        string              `json:"decision,omitempty"`
	Reasons         []string            `json:"reasons,omitempty"`
	BreakglassGrant string              `json:"breakglass_grant,omitempty"`
	PolicyVersion   string              `json:"policy_version,omitempty"`
	// Queries are the effect queries the policy made for this decision (ztp.query), in
	// the order it made them.
	Queries []Query `json:"queries,omitempty"`

	// Ref links an outcome record to its decision record's Seq.
	Ref         uint64  `json:"ref,omitempty"`
	Code        string  `json:"code,omitempty"` // gRPC code name, e.g. "OK"
	DurationMS  float64 `json:"duration_ms,omitempty"`
	MessagesIn  uint64  `json:"messages_in,omitempty"`
	MessagesOut uint64  `json:"messages_out,omitempty"`
	// BytesIn and BytesOut are the message bytes of an outcome record's
	// call: received from the client, and sent to it (the payload of each
	// gRPC message, uncompressed, without the 5-byte frame header). Optional: omitted
	// when zero, and absent from records written before they existed.
	BytesIn  uint64 `json:"bytes_in,omitempty"`
	BytesOut uint64 `json:"bytes_out,omitempty"`

	// Detail is free text for system and policy records, the status message
	// on outcome records, and on a request record whose request was not
	// decoded, the reason's name (decode.Reason: "too_complex", …).
	Detail string `json:"detail,omitempty"`

	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// ParseLine decodes an exported JSON line (or a stored record value) into a
// Record without checking its hash; use VerifyLine or a ChainVerifier for
// that. Request keeps the stored bytes exactly.
func ParseLine(line []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &r, nil
}

func validType(t string) bool {
	switch t {
	case TypeRequest, TypeOutcome, TypeBreakglass, TypePolicy, TypeSystem:
		return true
	}
	return false
}

func validDecision(d string) bool {
	switch d {
	case "", DecisionAllow, DecisionDeny, DecisionDryrunDeny, DecisionRatelimited, DecisionError:
		return true
	}
	return false
}
