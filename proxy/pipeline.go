package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/metrics"
	"github.com/ztp-dev/ztp/policy"
)

// Metadata keys the caller sets to explain a change; they reach the policy and the
// audit record, never the upstream.
const (
	HeaderJustification = "x-ztp-justification"
	HeaderTicket        = "x-ztp-ticket"
)

// Authenticator turns a call's transport credentials into a classified principal.
type Authenticator interface {
	Authenticate(ctx context.Context) (identity.Principal, error)
}

// Evaluator is a loaded policy. Version names the content that made a decision.
type Evaluator interface {
	EvalValue(ctx context.Context, input ast.Value) (policy.Result, error)
	Version() string
}

// Auditor durably appends records; a nil error means the record is committed.
type Auditor interface {
	Append(ctx context.Context, r *audit.Record) (uint64, error)
	// AppendDeferred queues a record nothing waits on; done reports its commit.
	AppendDeferred(ctx context.Context, r *audit.Record, done func(error)) error
}

// Decoder renders a method's request bytes for the policy (read-only).
type Decoder interface {
	// DecodeUnknown also lists where the message has fields the descriptors
	// do not know (see decode.Decoder.DecodeUnknown). The error says why the
	// message was not decoded; decode.Reason names it.
	DecodeUnknown(ctx context.Context, fullMethod string, b []byte) (map[string]any, []string, decode.MethodInfo, error)
	Info(ctx context.Context, fullMethod string) decode.MethodInfo
}

// GrantInfo is what the pipeline needs of an active break-glass grant.
type GrantInfo struct {
	ID      string
	Reason  string
	Ticket  string
	Expires time.Time
}

// GrantFinder finds the principal's active break-glass grant whose scope covers
// method at now. It is called for every message and must be cheap.
type GrantFinder interface {
	ActiveGrant(principalID, method string, now time.Time) (GrantInfo, bool)
}

// RateLimiter takes one token from the principal's bucket for method; when none
// is left it says how long to wait and which bucket ran dry. breakglass reports
// that the principal holds an active grant for the method.
type RateLimiter interface {
	Allow(p identity.Principal, method string, breakglass bool, now time.Time) (ok bool, retryAfter time.Duration, bucket string)
}

// BudgetTaker draws the policy's change budgets: all or nothing.
type BudgetTaker interface {
	Take(budgets []policy.Budget, now time.Time) (ok bool, retryAfter time.Duration, key string)
}

// Pipeline runs the safety stages around the forwarder for every call and every
// client message. The steps appear in intercept and decide in the order they run.
type Pipeline struct {
	auth             Authenticator
	routes           *router
	policy           atomic.Pointer[activePolicy]
	control          controlAuthz
	grants           GrantFinder  // nil: no break-glass
	limiter          RateLimiter  // nil: no rate limits configured
	budgets          BudgetTaker  // nil: no change budgets configured
	volume           VolumeMeters // nil: no response-volume limits (volume.go)
	metrics          *metrics.Metrics
	mode             policy.Mode
	audit            Auditor
	now              func() time.Time
	maxUnaryDeadline time.Duration
	auditTimeout     time.Duration
	log              *slog.Logger
	evals            *evalPool      // nil: evaluate on the caller's goroutine
	refusals         *refusalBudget // nil: every unauthenticated refusal gets its own record
	afterFunc        func(time.Duration, func()) func() bool
	live             liveCalls // calls in progress, ended when their credential is (expiry.go)
	streams          *streams  // first-message timeout and streams per principal (streams.go)
	// principalRefusals bounds the refusal records of each principal (nil: no
	// bound); see admitDecision.
	principalRefusals *refusalBudget
	headers           headerAllow // audit.headers: the request headers policies and records see
	maxRequestBytes   int         // audit.max_request_bytes, for the cost of a refusal record

	// outcomes tracks outcome records queued but not yet committed; they are
	// written after the call returned so the client does not wait for an fsync.
	outcomes sync.WaitGroup
}

// SetPolicy swaps the active policy; calls in flight finish their current message
// with the policy they loaded for it.
func (p *Pipeline) SetPolicy(e Evaluator) {
	p.policy.Store(&activePolicy{eval: e, loaded: p.now()})
	p.metrics.SetPolicy(e.Version(), string(p.mode))
}

func (p *Pipeline) active() *activePolicy { return p.policy.Load() }

// call is the per-call state shared by the pipeline's stages and the forwarder.
type call struct {
	start         time.Time
	method        string
	service, rpc  string
	peer          string
	principal     identity.Principal
	upstream      *upstream
	info          decode.MethodInfo
	metadata      map[string][]string // sanitized client metadata, for policy and audit
	mdInput       ast.Value           // the same, converted for the policy input once per call
	in0           *callTerms          // the policy input's parts that stay the same for the call
	justification string
	ticket        string

	// Messages received from the client / sent to it. Atomic: a pump goroutine
	// may still be receiving while the outcome is recorded.
	in, out   atomic.Int64
	volume    callVolume // message bytes both ways, and the response-volume meter (volume.go)
	firstSeq  uint64     // audit seq of the first decision record; outcome records point here
	forwarded bool       // the first message was admitted (the upstream saw the call)
	live      *liveCall
}

type callKey struct{}

func callFromContext(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

// intercept is the grpc.StreamServerInterceptor wrapping the forwarder.
func (p *Pipeline) intercept(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if isControl(info.FullMethod) {
		return p.controlStream(srv, ss, info, handler)
	}
	ctx := ss.Context()
	c := &call{start: p.now(), method: info.FullMethod, peer: peerAddr(ctx)}
	c.service, c.rpc, _ = splitMethod(c.method)

	// 1+2. Authenticate and classify. Identity comes from the verified transport
	// credentials only, never from metadata.
	pr, gen, err := p.authenticate(ctx)
	if err != nil {
		p.refuseUnauthenticated(ctx, c, err.Error())
		return status.Error(codes.Unauthenticated, "ztp: "+err.Error())
	}
	c.principal = pr
	ctx = p.watch(ctx, c, gen) // ends the call when the credential no longer counts
	defer c.live.close()

	// 3. Route.
	c.upstream = p.routes.lookup(c.method)
	if c.upstream == nil {
		p.refuse(ctx, c, &pr, "no upstream serves "+recordedMethod(c.method))
		return status.Errorf(codes.Unimplemented, "ztp: no upstream serves %s", c.method)
	}
	if c.upstream.decoder != nil {
		c.info = c.upstream.decoder.Info(ctx, c.method)
	}
	// Unary calls get the configured maximum deadline; streams never get one
	// (an etcd watch may stay open for days).
	if p.maxUnaryDeadline > 0 && c.unary() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.maxUnaryDeadline)
		defer cancel()
	}
	c.readMetadata(ctx, p.headers)
	if err := p.admitStream(ctx, c); err != nil {
		return err
	}
	ctx = context.WithValue(ctx, callKey{}, c)

	// 4..8 run per message inside RecvMsg; the forwarder only sees admitted messages.
	p.metrics.InflightStreams.Inc()
	err = c.live.status(handler(srv, &stream{ServerStream: ss, ctx: ctx, p: p, c: c}))
	p.metrics.InflightStreams.Dec()

	// 9. Outcome, appended in the background: the decision record already made
	// the call accountable, and the caller need not wait for a second fsync.
	end := p.now()
	code := codeName(status.Code(err))
	p.metrics.Calls.WithLabelValues(c.upstream.name, c.methodLabel(), code).Inc()
	if c.forwarded {
		p.metrics.ForwardSeconds.WithLabelValues(c.upstream.name).Observe(end.Sub(c.start).Seconds())
	}
	if c.firstSeq != 0 {
		p.outcome(ctx, c, err, end)
	}
	return err
}

// unary reports that the upstream's descriptors say the method is unary.
func (c *call) unary() bool {
	return c.info.Known && !c.info.ClientStreaming && !c.info.ServerStreaming
}

// methodLabel bounds metric label values: only methods the upstream's descriptors
// know are labelled by name.
func (c *call) methodLabel() string {
	if c.info.Known {
		return c.method
	}
	return "unknown"
}

// stream hooks RecvMsg so each client message is decided and audited before the
// forwarder may send it on.
type stream struct {
	grpc.ServerStream
	ctx context.Context
	p   *Pipeline
	c   *call
}

func (s *stream) Context() context.Context { return s.ctx }

func (s *stream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		if errors.Is(err, io.EOF) && s.c.in.Load() == 0 {
			// A call that sends no message still makes the upstream run its
			// handler: decide it too, with no request.
			if derr := s.p.decide(s.ctx, s.c, nil); derr != nil {
				return derr
			}
		}
		return err
	}
	f, ok := m.(*frame)
	if !ok {
		return status.Error(codes.Internal, "ztp: unexpected message type")
	}
	// A unary method takes one message. A second one breaks the protocol (the
	// upstream would refuse it too); it is neither decided nor forwarded, and
	// the call fails: deciding it could race with the end of the call.
	if s.c.unary() && s.c.in.Load() > 0 {
		return status.Errorf(codes.InvalidArgument, "ztp: %s is unary: more than one request message", s.c.method)
	}
	s.c.volume.bytesIn.Add(int64(len(f.Data)))
	return s.p.decide(s.ctx, s.c, f)
}

func (s *stream) SendMsg(m any) error {
	if err := s.p.sendAllowed(s.c); err != nil {
		return err
	}
	n, err := s.p.chargeResponse(s, m)
	if err != nil {
		return err
	}
	if err := s.ServerStream.SendMsg(m); err != nil {
		return err
	}
	s.c.out.Add(1)
	s.c.volume.bytesOut.Add(int64(n))
	return nil
}

// decide runs decode, policy and audit for one client message (msg == nil: the
// call carried none). A nil return admits the message to the forwarder.
func (p *Pipeline) decide(ctx context.Context, c *call, msg *frame) error {
	idx := int(c.in.Add(1) - 1)
	now := p.now()
	rec := p.recordAt(c, "request", now)
	rec.MessageIndex = idx
	rec.RequestBytes, rec.RequestSHA256 = messageDigest(msg)

	// The credential that authenticated the call may expire while a stream stays
	// open for days: messages after that are refused like an unauthenticated call.
	if reason := c.credentialEnd(now); reason != "" {
		return p.refuseEnded(ctx, c, rec, reason)
	}

	// Break-glass: is an approved, unexpired grant of this principal in scope?
	// Looked up per message, so a grant ends exactly when it expires or is revoked.
	var grant GrantInfo
	hasGrant := false
	if p.grants != nil {
		grant, hasGrant = p.grants.ActiveGrant(c.principal.ID, c.method, now)
	}

	// 4. Rate-limit per principal, before any decoding or policy work.
	if p.limiter != nil {
		if ok, wait, bucket := p.limiter.Allow(c.principal, c.method, hasGrant, now); !ok {
			return p.ratelimited(ctx, c, rec, "rate limit "+bucket, wait)
		}
	}

	// 5. Decode (read-only; the original bytes are what gets forwarded).
	var req map[string]any
	var reqIn ast.Value // the request for the policy; nil: not decoded
	var unknown []string
	var inErr error
	decoded, undecoded := false, ""
	switch {
	case msg == nil:
		undecoded = decode.ReasonNoMessage
	case c.upstream.decoder == nil:
		undecoded = decode.ReasonNoDescriptors
	default:
		var derr error
		req, unknown, _, derr = c.upstream.decoder.DecodeUnknown(ctx, c.method, msg.Data)
		if dup, ok := errors.AsType[*decode.DuplicateFieldError](derr); ok {
			// Refused before policy: there is no single request to decide.
			return p.ambiguous(ctx, c, rec, dup)
		}
		decoded, undecoded = derr == nil, decode.Reason(derr)
		if decoded {
			reqIn, inErr = requestValue(req)
		} else {
			p.log.LogAttrs(ctx, slog.LevelDebug, "request not decoded", slog.String("method", c.method),
				slog.String("principal", c.principal.ID), slog.String("reason", undecoded), slog.String("err", derr.Error()))
		}
	}
	rec.RequestDecoded = decoded
	if !decoded {
		rec.Detail = undecoded
	}
	rec.RequestUnknownFields = recordedUnknown(unknown) // what the policy saw, for replay
	if decoded {
		if req == nil {
			req = map[string]any{} // an all-default message is {}, as protojson prints it
		}
		if b, err := json.Marshal(req); err == nil {
			rec.Request = b
		}
	}

	// 6. Decide, then draw on the change budgets the policy named (only when allowed).
	// Effect queries (ztp.query) the policy makes are answered by the upstream and
	// go into the record with the decision they informed.
	eng := p.policy.Load().eval
	t0 := time.Now()
	res, evalErr := policy.Result{}, inErr
	if inErr == nil {
		qctx, qs := c.upstream.queries(ctx)
		res, evalErr = p.evals.eval(qctx, eng, p.input(c, reqIn, undecoded, unknown, idx, grant, hasGrant, now))
		rec.Queries = auditQueries(qs)
	}
	p.metrics.PolicySeconds.Observe(time.Since(t0).Seconds())
	v := policy.Decide(res, evalErr, p.mode, grant.ID)
	rec.PolicyVersion = eng.Version()
	if hasGrant && v.Grant != "" {
		rec.Justification = firstNonEmpty(c.justification, grant.Reason)
		rec.Ticket = firstNonEmpty(c.ticket, grant.Ticket)
	}
	// Only an allowed message spends budget: a dryrun_deny is recorded, not charged.
	if v.Decision == policy.DecisionAllow && len(res.Budgets) > 0 && p.budgets != nil {
		if ok, wait, key := p.budgets.Take(res.Budgets, now); !ok {
			reason := "change budget " + key + " exhausted"
			if wait < 0 { // not retryable: key says why (no budgets prefix, cost above the limit)
				reason = "change budget " + key
			}
			return p.ratelimited(ctx, c, rec, reason, wait)
		}
	}

	// 7. Audit, durably, before anything is forwarded.
	rec.Decision = v.Decision
	rec.Reasons = v.Reasons
	rec.BreakglassGrant = v.Grant
	seq, err := p.appendDecision(ctx, c, rec)
	if err != nil {
		return err
	}
	if idx == 0 {
		c.firstSeq = seq
		c.forwarded = v.Forward()
	}
	p.metrics.Decisions.WithLabelValues(c.upstream.name, c.methodLabel(), v.Decision).Inc()
	// One log line per decision, joinable with the audit log by seq.
	// LogAttrs with typed attributes: no boxing, and nothing at all when info is off.
	p.log.LogAttrs(ctx, slog.LevelInfo, "decision", slog.Uint64("seq", seq), slog.String("method", c.method),
		slog.String("principal", c.principal.ID), slog.String("decision", v.Decision), slog.Any("reasons", v.Reasons), slog.String("grant", v.Grant),
		slog.String("request_undecoded_reason", undecoded))

	if v.Forward() {
		return nil
	}
	return status.Error(codes.PermissionDenied, policy.DeniedMessage(v.Reasons))
}

// ambiguous audits and refuses a message that runtimes read differently (a
// non-repeated field occurs twice), before any policy work: the policy and
// the audit record would judge a request the upstream may not run.
func (p *Pipeline) ambiguous(ctx context.Context, c *call, rec *audit.Record, dup *decode.DuplicateFieldError) error {
	reason := "ambiguous encoding: " + dup.Path
	if dup.Oneof != "" {
		reason += " is a second member of oneof " + dup.Oneof
	} else {
		reason += " occurs more than once"
	}
	rec.Detail = decode.ReasonAmbiguous
	seq, err := p.refuseMessage(ctx, c, rec, policy.DecisionDeny, reason)
	if err != nil {
		return err
	}
	p.log.LogAttrs(ctx, slog.LevelInfo, "decision", slog.Uint64("seq", seq), slog.String("method", c.method),
		slog.String("principal", c.principal.ID), slog.String("decision", policy.DecisionDeny), slog.Any("reasons", rec.Reasons),
		slog.String("request_undecoded_reason", decode.ReasonAmbiguous))
	return status.Error(codes.InvalidArgument, "ztp: "+reason+"; the upstream may read this message differently (allow_duplicate_fields)")
}

// ratelimited audits and refuses a message over a rate limit or change budget,
// telling the client when to retry (gRPC's retry pushback trailer and the message).
func (p *Pipeline) ratelimited(ctx context.Context, c *call, rec *audit.Record, reason string, wait time.Duration) error {
	kind := "rate"
	if strings.HasPrefix(reason, "change budget") {
		kind = "budget"
	}
	p.metrics.RateLimited.WithLabelValues(kind).Inc()
	if _, err := p.refuseMessage(ctx, c, rec, audit.DecisionRatelimited, reason); err != nil {
		return err
	}
	return exhausted(ctx, reason, wait)
}

// refuseMessage audits a message the proxy refuses before, or instead of, the
// policy's decision (rate limit, change budget, ambiguous encoding, a
// credential that ended): it records decision and reason, counts it, and makes
// a first message's record the one the call's outcome record points at. An
// error is the status for the client when the audit log cannot take the record;
// otherwise the caller refuses with its own status.
func (p *Pipeline) refuseMessage(ctx context.Context, c *call, rec *audit.Record, decision, reason string) (uint64, error) {
	rec.Decision = decision
	rec.Reasons = []string{reason}
	up, method := c.labels()
	p.metrics.Decisions.WithLabelValues(up, method, decision).Inc()
	seq, err := p.appendDecision(ctx, c, rec)
	if err != nil {
		return 0, err
	}
	if rec.MessageIndex == 0 {
		c.firstSeq = seq
	}
	return seq, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// WaitOutcomes blocks until the outcome records of finished calls are appended.
func (p *Pipeline) WaitOutcomes() { p.outcomes.Wait() }

// refuse audits a call turned away before any message was read.
func (p *Pipeline) refuse(ctx context.Context, c *call, pr *identity.Principal, reason string) {
	rec := p.record(c, "request")
	if pr == nil {
		rec.Principal = nil
	}
	rec.Decision = policy.DecisionDeny
	rec.Reasons = []string{reason}
	p.metrics.Decisions.WithLabelValues("", "unknown", policy.DecisionDeny).Inc()
	if !p.admitDecision(ctx, rec) {
		return // counted for the principal's summary record
	}
	if _, err := p.append(ctx, rec); err != nil {
		p.log.Error("audit append failed for refused call", "method", c.method, "err", err)
	}
}

// refuseUnauthenticated audits a call refused before authentication, within the
// refusal budget: past it the refusal is counted for the host's summary record.
func (p *Pipeline) refuseUnauthenticated(ctx context.Context, c *call, reason string) {
	if p.refusals == nil {
		p.refuse(ctx, c, nil, reason)
		return
	}
	record, closed := p.refusals.admit(c.peer, reason, p.now())
	p.auditRefusalSummaries(ctx, closed)
	if record {
		p.refuse(ctx, c, nil, reason)
		return
	}
	p.metrics.Decisions.WithLabelValues("", "unknown", policy.DecisionDeny).Inc()
	p.metrics.RefusalsUnrecorded.Inc()
}

// appendQueued hands rec to the audit writer without waiting for its commit;
// a later append's commit, or the writer's own within audit.DeferDelay, makes
// it durable.
func (p *Pipeline) appendQueued(ctx context.Context, rec *audit.Record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.auditTimeout)
	defer cancel()
	return p.audit.AppendDeferred(ctx, rec, func(err error) {
		if err != nil {
			p.metrics.AuditErrors.Inc()
			p.log.Error("audit append failed for refusal summary", "peer", rec.Peer, "reason", rec.Reasons[0], "err", err)
			return
		}
		p.metrics.AuditRecords.Inc()
	})
}

// outcome appends the record that closes a call, linked to its first decision.
func (p *Pipeline) outcome(ctx context.Context, c *call, err error, end time.Time) {
	rec := p.record(c, "outcome")
	rec.Ref = c.firstSeq
	rec.Code = codeName(status.Code(err))
	if err != nil {
		rec.Detail = status.Convert(err).Message()
	}
	rec.DurationMS = float64(end.Sub(c.start).Microseconds()) / 1000
	rec.MessagesIn = uint64(c.in.Load())
	rec.MessagesOut = uint64(c.out.Load())
	rec.BytesIn, rec.BytesOut = c.volume.bytes()
	// Deferred: the outcome shares the next decision's commit (or is committed
	// within audit.DeferDelay), so a call never costs a second fsync of its own.
	failed := func(aerr error) {
		p.metrics.AuditErrors.Inc()
		p.log.Error("audit append failed for outcome", "method", c.method, "ref", c.firstSeq, "err", aerr)
	}
	p.outcomes.Add(1)
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.auditTimeout)
	defer cancel()
	err = p.audit.AppendDeferred(qctx, rec, func(aerr error) {
		if aerr != nil {
			failed(aerr)
		} else {
			p.metrics.AuditRecords.Inc()
		}
		p.outcomes.Done()
	})
	if err != nil {
		failed(err)
		p.outcomes.Done()
	}
}

// recordedMethod is a method name as records keep it: the caller's own
// :path, which may fill limits.max_header_bytes, cut like a header value. No
// upstream serves a name that long; kept whole, it would make every refusal
// record of its caller that large, beyond what the refusal budgets count.
func recordedMethod(m string) string { return boundString(m) }

// Bounds of request_unknown_fields in a record: the list a policy sees is bounded
// only by limits.max_decoded_nodes, and deep paths are long.
const (
	maxRecordedUnknown      = 64
	maxRecordedUnknownBytes = 4 << 10
)

// recordedUnknown is request_unknown_fields as records keep it: the first paths,
// up to maxRecordedUnknown of them and maxRecordedUnknownBytes in all, then one
// entry counting the rest. A replay of a cut list still sees unknown fields
// where the proxy's policy saw them.
func recordedUnknown(paths []string) []string {
	size := 0
	for i, u := range paths {
		size += len(u)
		if i == maxRecordedUnknown || size > maxRecordedUnknownBytes {
			return append(slices.Clip(paths[:i]), fmt.Sprintf("… and %d more", len(paths)-i))
		}
	}
	return paths
}

func (p *Pipeline) record(c *call, typ string) *audit.Record {
	return p.recordAt(c, typ, p.now())
}

// recordAt is record at time now, for a caller that has read the clock
// already (decide: one clock read per message).
func (p *Pipeline) recordAt(c *call, typ string, now time.Time) *audit.Record {
	pr := c.principal
	rec := &audit.Record{
		Time:          now.UTC(),
		Type:          typ,
		Principal:     &audit.Principal{ID: pr.ID, Kind: pr.Kind, Groups: pr.Groups, Authn: pr.Authn},
		Peer:          c.peer,
		Method:        recordedMethod(c.method),
		Justification: c.justification,
		Ticket:        c.ticket,
	}
	if c.upstream != nil {
		rec.Upstream = c.upstream.name
	}
	if typ == "request" && len(c.metadata) > 0 {
		rec.Metadata = c.metadata
	}
	return rec
}

// appendDecision appends the decision record of a message; when the audit log
// cannot take it, the message is refused: the returned error is the status for
// the client. A refusal past the principal's refusal budget gets no record of
// its own (seq 0, nil error); it is counted into the principal's summary.
func (p *Pipeline) appendDecision(ctx context.Context, c *call, rec *audit.Record) (uint64, error) {
	if !p.admitDecision(ctx, rec) {
		return 0, nil // counted for the principal's summary record
	}
	seq, err := p.append(ctx, rec)
	if err != nil {
		p.log.Error("audit append failed; refusing call", "method", c.method, "principal", c.principal.ID, "err", err)
		return 0, status.Error(codes.Unavailable, "ztp: audit log unavailable; request not forwarded")
	}
	return seq, nil
}

// append writes with a context detached from the caller's: a client hanging up
// must not drop a record that is already on its way, but a stuck disk must not hold
// the call forever either.
func (p *Pipeline) append(ctx context.Context, rec *audit.Record) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.auditTimeout)
	defer cancel()
	t0 := time.Now()
	seq, err := p.audit.Append(ctx, rec)
	p.metrics.AuditAppendSeconds.Observe(time.Since(t0).Seconds())
	if err != nil {
		p.metrics.AuditErrors.Inc()
	} else {
		p.metrics.AuditRecords.Inc()
	}
	return seq, err
}

func peerAddr(ctx context.Context) string {
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		if a, ok := pr.Addr.(*net.TCPAddr); ok {
			return a.String()
		}
		return pr.Addr.String()
	}
	return ""
}
