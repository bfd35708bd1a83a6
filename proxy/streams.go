package proxy

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/ztp-dev/ztp/audit"
)

// Bounds on calls that hold the proxy without asking anything of it.
//
// A call costs the proxy a goroutine and buffers from the moment its headers
// arrive, but the pipeline (and the upstream) only hear of it with its first
// request message. Without bounds, a client could open thousands of calls that
// never send one, and leave no trace when it cancels them. So:
//
//   - every call must send its first request message (or half-close) within
//     limits.first_message_timeout, counted from its headers: past it the proxy
//     ends the call with DEADLINE_EXCEEDED. The timer is armed by gRPC's tap
//     handle, before any interceptor runs, so it covers unary control-API calls
//     too, whose request gRPC reads before the proxy's code runs;
//   - a principal has at most limits.max_streams_per_principal calls open,
//     over all its connections (unary control-API calls, which end by
//     themselves, are not counted); the next one is refused RESOURCE_EXHAUSTED;
//   - a call that ends before its first message, ended by the timeout, refused
//     at the bound or cancelled by its client, is counted
//     (ztp_streams_ended_early_total) and audited within a refusal budget of
//     its own (see refusalBudget): per window the first records of each peer
//     host are written one by one, the rest summed up per host, so that
//     thousands of such calls cannot flood the audit log either.

// Reasons of ztp_streams_ended_early_total.
const (
	endedTimeout    = "first_message_timeout"
	endedCancelled  = "client_cancelled"
	endedOverLimit  = "max_streams_per_principal"
	endedCredential = "credential_ended" // its credential expired, or a reload refused it (expiry.go)
)

// States of a streamGuard.
const (
	guardArmed   int32 = iota // no request message yet
	guardSeen                 // the first message (or the half-close) arrived
	guardExpired              // the first-message timeout ended the call
	guardEnded                // the call ended before its first message
)

// streams are the pipeline's stream bounds.
type streams struct {
	timeout   time.Duration
	afterFunc func(time.Duration, func()) (stop func() bool)
	max       int
	budget    *refusalBudget // records of calls that ended before their first message

	// stopping is set when the server's shutdown begins: calls cut from then
	// on were not cancelled by their clients, and the "stopped" record covers
	// them.
	stopping atomic.Bool

	mu   sync.Mutex
	open map[string]int // calls open per principal id; ids with none are deleted
}

func newStreams(timeout time.Duration, max int, afterFunc func(time.Duration, func()) (stop func() bool)) *streams {
	b := newRefusalBudget(refusalWindow, refusalsPerHost, refusalsGlobal, refusalHosts)
	b.what, b.verb = "calls", "ended before their first request message"
	return &streams{timeout: timeout, max: max, afterFunc: afterFunc, budget: b, open: map[string]int{}}
}

// acquire takes one of id's slots; false when all max are taken.
func (s *streams) acquire(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[id] >= s.max {
		return false
	}
	s.open[id]++
	return true
}

func (s *streams) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[id] <= 1 {
		delete(s.open, id)
		return
	}
	s.open[id]--
}

// streamGuard follows one call from its headers (the tap) to its end.
type streamGuard struct {
	p      *Pipeline
	method string
	// parent is gRPC's context of the call: done when the client cancelled
	// or its connection closed, or when gRPC finished the call.
	parent    context.Context
	cancel    context.CancelFunc // ends the call's context (a child of parent)
	stopTimer func() bool        // keeps the first-message timer from running; reports whether it did
	stopEnded func() bool        // unregisters endedUnintercepted
	state     atomic.Int32
	// intercepted: an interceptor runs the call and records how it ended;
	// until then the timer's function does. status is the call's transport
	// stream, set before intercepted.
	intercepted atomic.Bool
	status      statusWriter
	recorded    atomic.Bool          // the call's early end has its trace (one at most)
	call        atomic.Pointer[call] // who called, once authenticated (admitStream)
	slot        string               // principal whose slot the call holds; the interceptor's goroutine only
}

type guardKey struct{}

func guardOf(ctx context.Context) *streamGuard {
	g, _ := ctx.Value(guardKey{}).(*streamGuard)
	return g
}

// guardCtx is the call's context as the tap hands it to gRPC. Once the
// first-message timeout ended it, Err says DeadlineExceeded, so gRPC answers
// DEADLINE_EXCEEDED also where no proxy code runs (a unary control call whose
// request never came). Done and Value(&cancelCtxKey) are the embedded
// context's, so contexts derived from it are cancelled with it directly.
type guardCtx struct {
	context.Context
	g *streamGuard
}

func (c *guardCtx) Err() error {
	err := c.Context.Err()
	if err != nil && c.g.state.Load() == guardExpired {
		return context.DeadlineExceeded
	}
	return err
}

func (c *guardCtx) Value(k any) any {
	if k == (guardKey{}) {
		return c.g
	}
	return c.Context.Value(k)
}

// tap is the server's grpc.InTapHandle: it arms the call's first-message
// timer. gRPC runs it on the connection's reader with a lock held, so it only
// allocates and arms a timer.
func (p *Pipeline) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	g := &streamGuard{p: p, method: info.FullMethodName, parent: ctx}
	inner, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	g.stopTimer = p.streams.afterFunc(p.streams.timeout, g.expire)
	// A call may end before any interceptor runs (gRPC refused its request
	// message, or the client left): its timer must not outlive it. An
	// interceptor unregisters this, so an ordinary call costs no goroutine.
	g.stopEnded = context.AfterFunc(ctx, g.endedUnintercepted)
	return &guardCtx{Context: inner, g: g}, nil
}

// endedUnintercepted runs when gRPC's context of the call ended before an
// interceptor took the call: the call is over, so its timer goes, and its
// early end is recorded now rather than when the timer would have run.
func (g *streamGuard) endedUnintercepted() {
	if g.intercepted.Load() || !g.state.CompareAndSwap(guardArmed, guardEnded) {
		return
	}
	g.stopTimer()
	g.cancel()
	g.record(endedCancelled)
}

// takeOver is the stream interceptor's start: from here it records how the
// call ends.
func (g *streamGuard) takeOver() {
	g.intercepted.Store(true)
	g.stopEnded()
}

// expire runs when the first-message timeout passed.
func (g *streamGuard) expire() {
	if !g.state.CompareAndSwap(guardArmed, guardExpired) {
		return
	}
	gone := g.parent.Err() != nil
	if g.intercepted.Load() {
		// The status goes out before the context ends: gRPC answers a read
		// that failed on its context with the context's error ("context
		// deadline exceeded"), which would not tell the client why.
		if g.status != nil {
			g.status.WriteStatus(status.Convert(g.timeoutStatus()))
		}
		g.cancel()
		return // the interceptor sees the call end and records it
	}
	g.cancel()
	// Nothing of the proxy runs for this call yet: a unary control call whose
	// request never came (or whose client left without one).
	if gone {
		g.record(endedCancelled)
		return
	}
	g.record(endedTimeout)
}

// seen marks the first message (or the half-close) as arrived.
func (g *streamGuard) seen() bool {
	if g.state.Load() == guardSeen {
		return true
	}
	if g.state.CompareAndSwap(guardArmed, guardSeen) {
		g.stopTimer()
		return true
	}
	return g.state.Load() == guardSeen
}

// guardStream is the outermost stream interceptor: it watches for the first
// message and, when the call ends, releases its stream slot and leaves the
// trace of an early end.
func (p *Pipeline) guardStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	g := guardOf(ss.Context())
	if g == nil {
		return status.Error(codes.Internal, "ztp: call without a stream guard")
	}
	g.status, _ = grpc.ServerTransportStreamFromContext(ss.Context()).(statusWriter)
	g.takeOver()
	err := handler(srv, &guardedStream{ServerStream: ss, g: g})
	if g.slot != "" {
		p.streams.release(g.slot)
	}
	switch {
	case g.state.CompareAndSwap(guardArmed, guardEnded):
		g.stopTimer()
		if c := g.call.Load(); c != nil && c.live.ended() {
			// The proxy ended it on the wire when the credential did, which
			// also ends parent: the client did not leave.
			g.record(endedCredential)
		} else if g.parent.Err() != nil {
			// The client (or its connection) went away before it sent anything.
			g.record(endedCancelled)
		}
	case g.state.Load() == guardExpired:
		g.record(endedTimeout)
		return g.timeoutStatus()
	}
	return err
}

// guardUnary is the outermost unary interceptor (control API only): gRPC
// has read the request, so the first message is there, unless the timeout
// ended the call first.
func (p *Pipeline) guardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	g := guardOf(ctx)
	if g == nil {
		return nil, status.Error(codes.Internal, "ztp: call without a stream guard")
	}
	// Not takeOver: for a unary call the timer's function keeps recording a
	// timeout, as it may already be running.
	g.stopEnded()
	if !g.seen() {
		return nil, g.timeoutStatus() // the timer's function recorded it
	}
	return handler(ctx, req)
}

func (g *streamGuard) timeoutStatus() error {
	return status.Errorf(codes.DeadlineExceeded, "ztp: no request message within %s of the call's start (limits.first_message_timeout)", g.p.streams.timeout)
}

// statusWriter is the method of gRPC's transport stream that ends a call
// with a status. Should a gRPC release not have it, the client sees the
// context's error instead (the code is DEADLINE_EXCEEDED all the same).
type statusWriter interface {
	WriteStatus(*status.Status) error
}

// guardedStream marks the first message as seen.
type guardedStream struct {
	grpc.ServerStream
	g *streamGuard
}

func (s *guardedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil || errors.Is(err, io.EOF) {
		s.g.seen()
	} else if s.g.state.Load() == guardExpired {
		return s.g.timeoutStatus()
	}
	return err
}

// admitStream takes one of c's principal's stream slots for the call (held
// until the call ends) and tells the guard who calls. Over the bound the call
// is refused, counted and audited within the refusal budget. The caller has
// set every field of c that records read.
func (p *Pipeline) admitStream(ctx context.Context, c *call) error {
	g := guardOf(ctx)
	if g == nil {
		return status.Error(codes.Internal, "ztp: call without a stream guard")
	}
	g.call.Store(c)
	if !p.streams.acquire(c.principal.ID) {
		g.record(endedOverLimit)
		return status.Errorf(codes.ResourceExhausted, "ztp: %s has %d calls open, the most limits.max_streams_per_principal allows; retry when one has ended",
			c.principal.ID, p.streams.max)
	}
	g.slot = c.principal.ID
	return nil
}

// record counts the call's early end and audits it within the budget: a
// request record (decision deny for the timeout, ratelimited at the bound)
// or, when the client left, an outcome record with no decision to point to.
func (g *streamGuard) record(why string) {
	p := g.p
	if (why == endedCancelled || why == endedTimeout) && p.streams.stopping.Load() {
		return
	}
	if !g.recorded.CompareAndSwap(false, true) {
		return
	}
	p.metrics.StreamsEndedEarly.WithLabelValues(why).Inc()
	c := g.call.Load()
	if c == nil {
		c = &call{method: g.method, peer: peerAddr(g.parent)}
	}
	var rec *audit.Record
	switch why {
	case endedTimeout:
		rec = p.record(c, audit.TypeRequest)
		rec.Decision = audit.DecisionDeny
		rec.Reasons = []string{"no request message within " + p.streams.timeout.String() + " (limits.first_message_timeout): call ended"}
	case endedCredential:
		rec = p.record(c, audit.TypeRequest)
		rec.Decision = audit.DecisionDeny
		rec.Reasons = []string{*c.live.reason.Load()}
	case endedOverLimit:
		rec = p.record(c, audit.TypeRequest)
		rec.Decision = audit.DecisionRatelimited
		rec.Reasons = []string{"limits.max_streams_per_principal: " + strconv.Itoa(p.streams.max) + " calls of " + c.principal.ID + " are open"}
	default:
		rec = p.record(c, audit.TypeOutcome)
		code := codes.Canceled
		if errors.Is(g.parent.Err(), context.DeadlineExceeded) {
			code = codes.DeadlineExceeded // the caller's own deadline
		}
		rec.Code = codeName(code)
		rec.Detail = "the client ended the call before its first request message"
	}
	if c.principal.ID == "" {
		rec.Principal = nil // not authenticated (yet)
	}
	reason := rec.Detail
	if len(rec.Reasons) > 0 {
		reason = rec.Reasons[0]
	}
	if c.principal.ID != "" {
		reason += " (" + c.principal.ID + ", " + rec.Method + ")"
	}
	now := p.now()
	ok, closed := p.streams.budget.admit(c.peer, reason, now)
	ctx := context.WithoutCancel(g.parent)
	p.auditRefusalSummaries(ctx, closed)
	if !ok {
		p.metrics.StreamsUnrecorded.Inc()
		return
	}
	if _, err := p.append(ctx, rec); err != nil {
		p.log.Error("audit append failed for a call that ended before its first message", "method", c.method, "peer", c.peer, "why", why, "err", err)
	}
}
