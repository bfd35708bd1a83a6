package proxy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/policy"
)

// A call counts only while the credential that opened it does. Every call,
// forwarded or served by the control API, unary or streaming, is a liveCall
// from authentication to its end:
//
//   - at the principal's Expires (identity.Expired, the rule Authenticate
//     applied at connection) a timer ends it: the call's context is cancelled
//     with the reason, which abandons the upstream call or the control
//     handler, and the call returns UNAUTHENTICATED "credentials expired at …"
//     whatever the handler returned. No goroutine waits for it, and a
//     principal without an expiry gets no timer;
//   - every message is checked against the same rule as it passes, in both
//     directions, so nothing reaches the client or the upstream after the
//     expiry even before the timer has run;
//   - a reload (reauthenticate) authenticates every live call again with the
//     rules and keys now in force and ends those whose principal is refused or
//     classified differently.
//
// The end is audited by the call's outcome record (code UNAUTHENTICATED, the
// reason in detail); a message refused for it gets a deny decision record.

// liveCall is one call in progress with the principal that opened it.
type liveCall struct {
	set       *liveCalls
	authCtx   context.Context // the call's own context: peer and metadata, for re-authentication
	principal identity.Principal
	cancel    context.CancelCauseFunc
	// transport ends the call on the wire: the handler may be blocked in a
	// send to a client that stopped reading, or in a receive from one that
	// sends nothing, neither of which the context's cancellation unblocks.
	transport statusWriter
	stop      func() bool            // the expiry timer; nil without an expiry
	reason    atomic.Pointer[string] // why the credential ended the call; nil while it counts
	closed    atomic.Bool            // the call has ended: a reload leaves it alone
	prev      *liveCall
	next      *liveCall
}

// liveCalls is the set of calls in progress, which a reload walks.
type liveCalls struct {
	mu   sync.Mutex
	head *liveCall
	gen  uint64 // bumped by each reload, under mu
}

// authenticate is Authenticate, also returning the reload generation the
// principal was classified under (watch needs it to miss no reload).
func (p *Pipeline) authenticate(ctx context.Context) (identity.Principal, uint64, error) {
	p.live.mu.Lock()
	gen := p.live.gen
	p.live.mu.Unlock()
	pr, err := p.auth.Authenticate(ctx)
	return pr, gen, err
}

// watch makes c end when its credential does; the returned context is the
// one the handler must use. The caller must call c.live.close when the call
// ends.
func (p *Pipeline) watch(ctx context.Context, c *call, gen uint64) context.Context {
	authCtx := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	l := &liveCall{set: &p.live, authCtx: authCtx, principal: c.principal, cancel: cancel}
	l.transport, _ = grpc.ServerTransportStreamFromContext(authCtx).(statusWriter)
	c.live = l
	if exp := c.principal.Expires; !exp.IsZero() {
		l.stop = p.afterFunc(exp.Sub(p.now()), func() { l.end((&identity.ExpiredError{At: exp}).Error()) })
	}
	p.live.mu.Lock()
	l.next = p.live.head
	if l.next != nil {
		l.next.prev = l
	}
	p.live.head = l
	reloaded := p.live.gen != gen
	p.live.mu.Unlock()
	if reloaded {
		// A reload ran between authentication and registration: its walk may
		// have missed this call, so the call checks itself.
		p.recheck(ctx, l)
	}
	return ctx
}

// close takes the call out of the set and stops its timer.
func (l *liveCall) close() {
	if l == nil {
		return
	}
	l.closed.Store(true)
	if l.stop != nil {
		l.stop()
	}
	s := l.set
	s.mu.Lock()
	if l.prev != nil {
		l.prev.next = l.next
	} else if s.head == l {
		s.head = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	}
	l.prev, l.next = nil, nil
	s.mu.Unlock()
	l.cancel(context.Canceled) // releases the context from its parent
}

// end ends the call for reason, once: the first reason stays.
func (l *liveCall) end(reason string) {
	if l.reason.CompareAndSwap(nil, &reason) {
		st := unauthenticatedStatus(reason)
		// The status goes out on the wire first, which also unblocks a send
		// or receive the handler is waiting in; then the handler's context
		// ends, which abandons the upstream call.
		if l.transport != nil {
			l.transport.WriteStatus(status.Convert(st))
		}
		l.cancel(st)
	}
}

func unauthenticatedStatus(reason string) error {
	return status.Error(codes.Unauthenticated, "ztp: "+reason)
}

// ended reports whether the credential ended the call.
func (l *liveCall) ended() bool { return l != nil && l.reason.Load() != nil }

// credentialEnd returns why c's credential no longer counts at now, "" while
// it does. A call found expired here is ended at once, before its timer runs.
func (c *call) credentialEnd(now time.Time) string {
	l := c.live
	if l != nil {
		if r := l.reason.Load(); r != nil {
			return *r
		}
	}
	if !identity.Expired(c.principal.Expires, now) {
		return ""
	}
	reason := (&identity.ExpiredError{At: c.principal.Expires}).Error()
	if l != nil {
		l.end(reason)
		return *l.reason.Load()
	}
	return reason
}

// sendAllowed is credentialEnd for a message on its way to the client: the
// clock is read only when the credential can expire.
func (p *Pipeline) sendAllowed(c *call) error {
	if c.live != nil {
		if r := c.live.reason.Load(); r != nil {
			return unauthenticatedStatus(*r)
		}
	}
	if c.principal.Expires.IsZero() {
		return nil
	}
	if r := c.credentialEnd(p.now()); r != "" {
		return unauthenticatedStatus(r)
	}
	return nil
}

// status is the call's final status: UNAUTHENTICATED with the reason when the
// credential ended it, whatever the handler made of its cancelled context.
func (l *liveCall) status(err error) error {
	if l == nil {
		return err
	}
	if r := l.reason.Load(); r != nil {
		return unauthenticatedStatus(*r)
	}
	return err
}

// reauthenticate checks every call in progress against the identity rules
// and keys now in force (after a reload) and ends, as UNAUTHENTICATED, those
// whose principal is refused or classified differently: a principal's kind
// and groups are what policies decided its messages on, and a stream such as
// a watch gets no further decision, so it is ended rather than re-classified;
// its client reconnects and is decided under the new rules. It returns how
// many calls it ended.
func (p *Pipeline) reauthenticate(ctx context.Context) int {
	p.live.mu.Lock()
	p.live.gen++
	var calls []*liveCall
	for l := p.live.head; l != nil; l = l.next {
		calls = append(calls, l)
	}
	p.live.mu.Unlock()
	ended := 0
	for _, l := range calls {
		if p.recheck(ctx, l) {
			ended++
		}
	}
	return ended
}

// recheck authenticates l's call again and ends it when the answer changed;
// it reports whether it ended it.
func (p *Pipeline) recheck(ctx context.Context, l *liveCall) bool {
	if l.closed.Load() || l.reason.Load() != nil {
		return false
	}
	np, err := p.auth.Authenticate(l.authCtx)
	var reason string
	switch {
	case err != nil:
		reason = "reload: " + err.Error()
	case np.ID != l.principal.ID || np.Authn != l.principal.Authn:
		reason = fmt.Sprintf("reload: the call's credentials now name %s (%s), not %s", np.ID, np.Authn, l.principal.ID)
	case np.Kind != l.principal.Kind || !slices.Equal(np.Groups, l.principal.Groups) || np.Person != l.principal.Person:
		reason = fmt.Sprintf("reload: principal %s is now classified kind %s groups %v person %q (was kind %s groups %v person %q)",
			np.ID, np.Kind, np.Groups, np.Person, l.principal.Kind, l.principal.Groups, l.principal.Person)
	default:
		return false
	}
	l.end(reason)
	p.log.InfoContext(ctx, "call ended by reload", "principal", l.principal.ID, "reason", reason)
	return true
}

// refuseEnded audits and refuses a message that arrived after the call's
// credential stopped counting.
func (p *Pipeline) refuseEnded(ctx context.Context, c *call, rec *audit.Record, reason string) error {
	if _, err := p.refuseMessage(ctx, c, rec, policy.DecisionDeny, reason); err != nil {
		return err
	}
	return unauthenticatedStatus(reason)
}

// afterFunc is time.AfterFunc with a stop function, the default of
// Options.AfterFunc.
func afterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
