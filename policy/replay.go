package policy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

// ReplayOptions shape a Replayer.
type ReplayOptions struct {
	// Since skips request records older than this (zero: replay everything).
	Since time.Time
	// Streaming says whether a method is client- or server-streaming; the audit record
	// does not keep it. Nil: both false. ztpctl takes it from a protoset.
	Streaming func(method string) (client, server bool)
	// Examples is how many example seqs each group keeps (default 3).
	Examples int
	// Reshape, when set, brings a recorded request to the shape the proxy renders today
	// and says how many values it added or rewrote: records written before the proxy
	// rendered zero values lack them. ztpctl takes it from a protoset
	// (decode.Protoset.Reshape). An error leaves the request as recorded.
	Reshape func(method string, request map[string]any) (int, error)
}

// Reasons a request record is not replayed, as counted in ReplayReport.Skipped.
const (
	SkipRatelimited  = "ratelimited"           // refused by a rate limit or budget; the policy never ran or was overruled
	SkipControlAPI   = "control_api"           // ztp.v1.* calls are authorized by built-in rules, not the policy
	SkipBeforePolicy = "refused_before_policy" // unauthenticated, no route: no policy decision was made
	SkipBeforeSince  = "before_since"          // older than ReplayOptions.Since
	// SkipTruncated: the request's rendering was longer than audit.max_request_bytes
	// and only its beginning was recorded; the policy saw all of it.
	SkipTruncated = "request_truncated"
	// SkipQueryNotRecorded: the candidate asked an effect query (ztp.query) whose answer
	// the record does not hold (not asked then, failed, or too large to keep): what the
	// upstream would have said is unknown, so the record is not replayed rather than guessed.
	SkipQueryNotRecorded = "query_not_recorded"
)

// ReplayGroup counts the changed decisions of one method and principal for one set of
// reasons: records whose reasons differ are in different groups, so a group's reasons
// are true of every record it counts.
type ReplayGroup struct {
	Method    string   `json:"method"`
	Principal string   `json:"principal"`
	Count     int      `json:"count"`
	Examples  []uint64 `json:"examples"` // seqs of the first few records
	// Reasons of every record in the group: the candidate's for allow→deny, the recorded
	// ones for deny→allow.
	Reasons []string `json:"reasons,omitempty"`
}

// ReplayChange is one direction of change.
type ReplayChange struct {
	Count  int           `json:"count"`
	Groups []ReplayGroup `json:"groups"` // most changes first, then by method and principal
}

// ReplayReport says what the candidate policy would have decided differently.
type ReplayReport struct {
	Version  string   `json:"policy_version"`    // the candidate's
	Recorded []string `json:"recorded_versions"` // versions that made the recorded decisions
	FirstSeq uint64   `json:"first_seq,omitempty"`
	LastSeq  uint64   `json:"last_seq,omitempty"`
	Replayed int      `json:"replayed"`
	// Unchanged counts records the candidate decides the same way (allow or not).
	Unchanged   int          `json:"unchanged"`
	AllowToDeny ReplayChange `json:"allow_to_deny"`
	DenyToAllow ReplayChange `json:"deny_to_allow"`
	// EvalErrors counts records on which the candidate failed to evaluate (each is a deny,
	// counted as allow→deny or unchanged).
	EvalErrors int `json:"eval_errors"`
	// Reshaped counts replayed records whose request ReplayOptions.Reshape changed:
	// written before the proxy rendered zero values, and filled in from the descriptors.
	Reshaped int            `json:"reshaped"`
	Skipped  map[string]int `json:"skipped"`
}

// Replayer re-evaluates recorded request records under a candidate policy. Feed it records
// in seq order with Add (audit.ScanFile does), then read Report. Not safe for concurrent
// use.
type Replayer struct {
	e        *Engine
	opts     ReplayOptions
	rep      ReplayReport
	recorded map[string]bool
	groups   [2]map[groupKey]*ReplayGroup // allow→deny, deny→allow
}

// NewReplayer replays under e.
func NewReplayer(e *Engine, opts ReplayOptions) *Replayer {
	if opts.Examples <= 0 {
		opts.Examples = 3
	}
	return &Replayer{
		e:        e,
		opts:     opts,
		rep:      ReplayReport{Version: e.Version(), Skipped: map[string]int{}},
		recorded: map[string]bool{},
		groups:   [2]map[groupKey]*ReplayGroup{{}, {}},
	}
}

// Add replays one record. Records that are not request records are ignored; request
// records the policy did not decide are counted as skipped. The candidate decides as in
// enforce mode, with the record's break-glass grant: a recorded dryrun_deny or error counts
// as a denial. An error is returned only for a record that cannot be turned into an input.
func (r *Replayer) Add(ctx context.Context, rec *audit.Record) error {
	if rec.Type != audit.TypeRequest {
		return nil
	}
	var recordedAllow bool
	switch {
	case strings.HasPrefix(rec.Method, "/ztp.v1."):
		r.rep.Skipped[SkipControlAPI]++
		return nil
	case rec.Decision == audit.DecisionRatelimited:
		r.rep.Skipped[SkipRatelimited]++
		return nil
	case rec.PolicyVersion == "" || rec.Principal == nil:
		r.rep.Skipped[SkipBeforePolicy]++
		return nil
	case !r.opts.Since.IsZero() && rec.Time.Before(r.opts.Since):
		r.rep.Skipped[SkipBeforeSince]++
		return nil
	case rec.RequestTruncated != "":
		r.rep.Skipped[SkipTruncated]++
		return nil
	case rec.Decision == audit.DecisionAllow:
		recordedAllow = true
	case rec.Decision == audit.DecisionDeny, rec.Decision == audit.DecisionDryrunDeny, rec.Decision == audit.DecisionError:
	default:
		r.rep.Skipped[SkipBeforePolicy]++
		return nil
	}

	var client, server bool
	if r.opts.Streaming != nil {
		client, server = r.opts.Streaming(rec.Method)
	}
	input, err := RecordInput(rec, client, server)
	if err != nil {
		return err
	}
	if req, ok := input["request"].(map[string]any); ok && r.opts.Reshape != nil {
		if n, err := r.opts.Reshape(rec.Method, req); err == nil && n > 0 {
			r.rep.Reshaped++
		}
	}
	qs := NewQueries(recordedAnswers(rec.Queries), QueryLimits{Max: math.MaxInt})
	res, evalErr := r.e.evalAt(WithQueries(ctx, qs), input, rec.Time)
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, q := range qs.Made() {
		if errors.Is(q.Err, errNotRecorded) {
			r.rep.Skipped[SkipQueryNotRecorded]++
			return nil
		}
	}
	v := Decide(res, evalErr, Enforce, rec.BreakglassGrant)
	if evalErr != nil {
		r.rep.EvalErrors++
	}

	if r.rep.FirstSeq == 0 {
		r.rep.FirstSeq = rec.Seq
	}
	r.rep.LastSeq = rec.Seq
	r.rep.Replayed++
	r.recorded[rec.PolicyVersion] = true
	switch allow := v.Decision == DecisionAllow; {
	case allow == recordedAllow:
		r.rep.Unchanged++
	case recordedAllow:
		r.change(0, rec, v.Reasons)
	default:
		r.change(1, rec, rec.Reasons)
	}
	return nil
}

// groupKey is method, principal and the reasons joined by NUL (which a reason, being
// text, does not hold).
type groupKey [3]string

func (r *Replayer) change(dir int, rec *audit.Record, reasons []string) {
	key := groupKey{rec.Method, rec.Principal.ID, strings.Join(reasons, "\x00")}
	g := r.groups[dir][key]
	if g == nil {
		g = &ReplayGroup{Method: rec.Method, Principal: rec.Principal.ID, Reasons: reasons}
		r.groups[dir][key] = g
	}
	g.Count++
	if len(g.Examples) < r.opts.Examples {
		g.Examples = append(g.Examples, rec.Seq)
	}
}

// Report returns what was replayed so far.
func (r *Replayer) Report() *ReplayReport {
	rep := r.rep
	rep.Skipped = maps.Clone(r.rep.Skipped)
	rep.Recorded = slices.Sorted(maps.Keys(r.recorded))
	rep.AllowToDeny = collect(r.groups[0])
	rep.DenyToAllow = collect(r.groups[1])
	return &rep
}

func collect(groups map[groupKey]*ReplayGroup) ReplayChange {
	ch := ReplayChange{Groups: []ReplayGroup{}}
	for _, g := range groups {
		ch.Count += g.Count
		c := *g
		c.Examples = slices.Clone(g.Examples)
		ch.Groups = append(ch.Groups, c)
	}
	slices.SortFunc(ch.Groups, func(a, b ReplayGroup) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Method, b.Method), strings.Compare(a.Principal, b.Principal),
			slices.Compare(a.Reasons, b.Reasons))
	})
	return ch
}

// RecordInput rebuilds the policy input the proxy evaluated for a request record, in the
// shape of the policy contract (README, "The policy contract"). What the record does not
// keep comes out as follows:
//
//   - request: as recorded, so fields matched by audit.redact read "[redacted]", and
//     records written before the proxy rendered zero values lack them (a Replayer
//     fills them in with ReplayOptions.Reshape);
//   - stream.client_streaming, stream.server_streaming: the arguments (the record has
//     only message_index);
//   - breakglass: {"active": true, "grant": id, "reason", "ticket"} from the record's
//     breakglass_grant, justification and ticket when the message was allowed by a grant
//     (no "expires"); {"active": false} otherwise, also when a grant was active but forbid
//     or an error denied the message;
//   - request_undecoded_reason: "" when the request was decoded, else the reason the
//     record keeps in its detail ("" in records written before reasons were recorded);
//   - request_unknown_fields: as recorded ([] in records written before it was);
//   - time: the record's time, to the second, as the proxy formats it.
func RecordInput(rec *audit.Record, clientStreaming, serverStreaming bool) (map[string]any, error) {
	var req any
	if rec.RequestDecoded {
		req = map[string]any{} // an all-default message, as the proxy passes it
	}
	if rec.RequestDecoded && len(rec.Request) > 0 && !bytes.Equal(rec.Request, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(rec.Request))
		dec.UseNumber()
		if err := dec.Decode(&req); err != nil {
			return nil, fmt.Errorf("seq %d: request: %w", rec.Seq, err)
		}
	}
	undecoded := ""
	if !rec.RequestDecoded {
		undecoded = rec.Detail
	}
	var pr audit.Principal
	if rec.Principal != nil {
		pr = *rec.Principal
	}
	groups := make([]any, len(pr.Groups))
	for i, g := range pr.Groups {
		groups[i] = g
	}
	md := make(map[string]any, len(rec.Metadata))
	for k, vs := range rec.Metadata {
		l := make([]any, len(vs))
		for i, v := range vs {
			l[i] = v
		}
		md[k] = l
	}
	bg := map[string]any{"active": false}
	if rec.BreakglassGrant != "" {
		bg = map[string]any{"active": true, "grant": rec.BreakglassGrant, "reason": rec.Justification, "ticket": rec.Ticket}
	}
	// Records written before request_unknown_fields existed have none.
	unknown := make([]any, len(rec.RequestUnknownFields))
	for i, u := range rec.RequestUnknownFields {
		unknown[i] = u
	}
	service, rpc := splitFullMethod(rec.Method)
	return map[string]any{
		"principal": map[string]any{
			"id":     pr.ID,
			"kind":   pr.Kind,
			"groups": groups,
			"authn":  pr.Authn,
		},
		"method":                   rec.Method,
		"service":                  service,
		"rpc":                      rpc,
		"upstream":                 rec.Upstream,
		"request":                  req,
		"request_decoded":          rec.RequestDecoded,
		"request_undecoded_reason": undecoded,
		"request_unknown_fields":   unknown,
		"stream": map[string]any{
			"client_streaming": clientStreaming,
			"server_streaming": serverStreaming,
			"message_index":    json.Number(strconv.Itoa(rec.MessageIndex)),
		},
		"metadata":      md,
		"justification": rec.Justification,
		"ticket":        rec.Ticket,
		"breakglass":    bg,
		"time":          rec.Time.UTC().Format(time.RFC3339),
	}, nil
}

// splitFullMethod splits "/pkg.Service/Method" as the proxy does; a malformed name gives
// empty service and rpc.
func splitFullMethod(fullMethod string) (service, rpc string) {
	s, ok := strings.CutPrefix(fullMethod, "/")
	if !ok {
		return "", ""
	}
	i := strings.LastIndexByte(s, '/')
	if i <= 0 || i == len(s)-1 {
		return "", ""
	}
	return s[:i], s[i+1:]
}

var errNotRecorded = errors.New("no recorded answer to this query (an audit record's queries, or ztpctl policy eval --answers)")

// RecordedAnswers is a Querier that answers only the queries qs hold answers for, exactly
// as asked then (method and canonical request), with the answer as recorded when it still
// matches its digest (audit.Query.RecordedAnswer); anything else is an error. Replay
// answers from a record's queries; ztpctl policy eval from a file of answers.
func RecordedAnswers(qs []audit.Query) Querier { return recordedAnswers(qs) }

type recordedAnswers []audit.Query

func (recordedAnswers) Allows(string) error { return nil }

func (r recordedAnswers) Query(_ context.Context, method string, request []byte) ([]byte, error) {
	for i := range r {
		q := &r[i]
		if q.Method != method {
			continue
		}
		if req, err := audit.Canonical(q.Request); err != nil || !bytes.Equal(req, request) {
			continue
		}
		if answer, ok := q.RecordedAnswer(); ok {
			return answer, nil
		}
	}
	return nil, errNotRecorded
}
