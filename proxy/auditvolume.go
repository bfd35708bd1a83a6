package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/ztp-dev/ztp/audit"
)

// The refusal budget of authenticated principals (see refusalBudget): per
// window, each principal's refusals (denied, rate-limited, over a change
// budget, invalid, expired credentials: every decision that is neither allow
// nor dryrun_deny) get records of their own until those records hold
// principalRefusalBytes, all principals' together principalRefusalsGlobal; the
// rest are counted and audited as one summary record per principal when the
// window ends. So one principal's refusals add at most principalRefusalBytes
// plus one record (≤ twice audit.max_request_bytes and 1 KiB per allowed header)
// plus one summary per window to the audit log, whatever its rate, message
// size or rate limit.
const (
	principalRefusalBytes   = 256 << 10
	principalRefusalsGlobal = 16 << 20
	principalRefusalKeys    = 10000
)

// refusalRecordBase is what a refusal record costs besides its request
// rendering, metadata, method and reasons: principal, hashes, framing.
const refusalRecordBase = 1024

// messageDigest is the size and SHA-256 of the exact bytes of a client
// message, as forwarded or refused (msg nil: the call carried none).
func messageDigest(msg *frame) (uint64, string) {
	if msg == nil {
		return 0, ""
	}
	sum := sha256.Sum256(msg.Data)
	return uint64(len(msg.Data)), hex.EncodeToString(sum[:])
}

// admitDecision reports whether a decision record gets written. Allowed
// messages (dryrun_deny included: it is forwarded) always do; a refusal only
// within its principal's refusal budget.
func (p *Pipeline) admitDecision(ctx context.Context, rec *audit.Record) bool {
	if p.principalRefusals == nil || rec.Principal == nil || rec.Decision == audit.DecisionAllow || rec.Decision == audit.DecisionDryrunDeny {
		return true
	}
	last := rec.Method
	if len(rec.Reasons) > 0 {
		last += ": " + rec.Reasons[0]
	}
	ok, closed := p.principalRefusals.admitPrincipal(rec.Principal, last, p.recordCost(rec), p.now())
	p.auditRefusalSummaries(ctx, closed)
	if !ok {
		p.metrics.PrincipalRefusalsUnrecorded.Inc()
	}
	return ok
}

// recordCost is an upper estimate of rec's size in the audit log.
func (p *Pipeline) recordCost(rec *audit.Record) int64 {
	n := refusalRecordBase + audit.StoredRequestBound(len(rec.Request), p.maxRequestBytes) + len(rec.Justification) + len(rec.Ticket) + len(rec.Method) + len(rec.Detail)
	for k, vs := range rec.Metadata {
		n += len(k)
		for _, v := range vs {
			n += len(v) + 3
		}
	}
	for _, r := range rec.Reasons {
		n += len(r)
	}
	return int64(n)
}

// FlushRefusals audits the summaries of the refusals that got no record of
// their own — unauthenticated, by principal, and of calls that ended before
// their first message: those of a window that has ended, or with force all
// counted so far (at shutdown).
func (p *Pipeline) FlushRefusals(ctx context.Context, force bool) {
	var streams *refusalBudget
	if p.streams != nil {
		streams = p.streams.budget
	}
	for _, b := range []*refusalBudget{p.refusals, p.principalRefusals, streams} {
		if b != nil {
			p.auditRefusalSummaries(ctx, b.flush(p.now(), force))
		}
	}
}

// auditRefusalSummaries appends the summaries, all but the last without
// waiting for their commit (the last one's commit carries them all). After a
// failure it logs the rest instead: with a stuck disk, a window's worth of
// summaries must not hold the caller, or shutdown, for an audit timeout each.
func (p *Pipeline) auditRefusalSummaries(ctx context.Context, sums []refusalSummary) {
	for i, sum := range sums {
		rec := sum.record(p.now())
		var err error
		if i < len(sums)-1 {
			err = p.appendQueued(ctx, rec)
		} else {
			_, err = p.append(ctx, rec)
		}
		if err != nil {
			for _, lost := range sums[i:] {
				p.log.Error("audit append failed for refusal summary", "who", lost.who(), "refused", lost.suppressed, "reason", lost.reason(), "err", err)
			}
			return
		}
	}
}
