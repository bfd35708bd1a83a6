package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

// refusalBudget bounds the audit records that refused callers can make the
// proxy write. Every refused call is refused, but per window each key (a
// peer host, or a principal) may have refusal records of its own only up to
// perKey cost units, and all keys together up to global; past that its
// refusals are counted, and audited as one summary record per key when the
// window closes. Without it, anyone who can reach the port could make the
// proxy fsync a record per call and fill its disk.
//
// Two budgets use it:
//
//   - callers that never authenticated, keyed by peer host, each refusal
//     costing 1 (newRefusalBudget): with tls.client_auth: verify_if_given
//     anyone who can reach the port is such a caller. Hosts beyond maxKeys
//     in a window share one summary ("other hosts").
//   - authenticated principals, keyed by principal id, each refusal costing
//     the bytes its record would take (newPrincipalRefusalBudget). A rate
//     limit does not bound them: a message over the limit is itself a
//     refusal, and a denied one may carry megabytes. Principals beyond
//     maxKeys in a window get records of their own for every refusal: a
//     summary must name who was refused, and each of them needs a
//     credential of its own.
type refusalBudget struct {
	window     time.Duration
	perKey     int64
	global     int64
	maxKeys    int  // keys tracked per window
	principals bool // keys are principal ids (see above)
	// what the budget counts and what happened to them, for the summaries
	// of hosts ("unauthenticated calls", "refused" from newRefusalBudget).
	what, verb string

	mu     sync.Mutex
	start  time.Time
	logged int64 // cost of the individual records of this window
	keys   map[string]*keyRefusals
	other  keyRefusals // hosts beyond maxKeys
}

type keyRefusals struct {
	logged     int64
	suppressed int
	last       string           // reason of the last suppressed refusal
	principal  *audit.Principal // the principal, for a principal's key
}

// refusalSummary is what a closed window says about one key's unrecorded refusals.
type refusalSummary struct {
	host       string           // a host's summary: the host, "" for hosts beyond the table
	principal  *audit.Principal // a principal's summary: the principal
	suppressed int
	last       string
	from, to   time.Time
	what, verb string // see refusalBudget
}

// who names the summary's key for logs.
func (s refusalSummary) who() string {
	if s.principal != nil {
		return s.principal.ID
	}
	return s.host
}

func (s refusalSummary) reason() string {
	between := fmt.Sprintf("between %s and %s without a record of their own (last: %s)",
		s.from.UTC().Format(time.RFC3339), s.to.UTC().Format(time.RFC3339), s.last)
	if s.principal != nil {
		return fmt.Sprintf("%d more refused messages of %s %s", s.suppressed, s.principal.ID, between)
	}
	who := "from " + s.host
	if s.host == "" {
		who = "from other hosts"
	}
	return fmt.Sprintf("%d more %s %s %s %s", s.suppressed, s.what, who, s.verb, between)
}

// record is the summary's audit record.
func (s refusalSummary) record(now time.Time) *audit.Record {
	rec := &audit.Record{
		Time:     now.UTC(),
		Type:     audit.TypeRequest,
		Decision: audit.DecisionDeny,
		Reasons:  []string{s.reason()},
	}
	if s.principal != nil {
		rec.Principal = s.principal
	} else {
		rec.Peer = s.host
	}
	return rec
}

// newRefusalBudget bounds unauthenticated refusals: perHost records per
// host and global in all per window, for at most maxHosts hosts.
func newRefusalBudget(window time.Duration, perHost, global, maxHosts int) *refusalBudget {
	return &refusalBudget{window: window, perKey: int64(perHost), global: int64(global), maxKeys: maxHosts, keys: map[string]*keyRefusals{},
		what: "unauthenticated calls", verb: "refused"}
}

// newPrincipalRefusalBudget bounds authenticated refusals: records of
// perPrincipal bytes per principal and global bytes in all per window.
func newPrincipalRefusalBudget(window time.Duration, perPrincipal, global int64, maxPrincipals int) *refusalBudget {
	return &refusalBudget{window: window, perKey: perPrincipal, global: global, maxKeys: maxPrincipals, principals: true, keys: map[string]*keyRefusals{}}
}

// admit reports whether a refusal of an unauthenticated call from peer
// (host:port) gets its own record. It also returns the summaries of a
// window that has closed, which the caller must audit.
func (b *refusalBudget) admit(peer, reason string, now time.Time) (record bool, closed []refusalSummary) {
	return b.take(peerHost(peer), nil, reason, 1, now)
}

// admitPrincipal is admit for a refusal of principal p whose record would
// take cost bytes.
func (b *refusalBudget) admitPrincipal(p *audit.Principal, reason string, cost int64, now time.Time) (record bool, closed []refusalSummary) {
	return b.take(p.ID, p, reason, cost, now)
}

func (b *refusalBudget) take(key string, p *audit.Principal, reason string, cost int64, now time.Time) (record bool, closed []refusalSummary) {
	b.mu.Lock()
	defer b.mu.Unlock()
	closed = b.rotate(now)
	k := b.keys[key]
	if k == nil {
		switch {
		case len(b.keys) < b.maxKeys:
			k = &keyRefusals{principal: p}
			b.keys[key] = k
		case b.principals:
			return true, closed
		default:
			k = &b.other
		}
	}
	// The record that crosses a budget is still admitted: a budget bounds
	// what was recorded before it.
	if k != &b.other && k.logged < b.perKey && b.logged < b.global {
		k.logged += cost
		b.logged += cost
		return true, closed
	}
	k.suppressed++
	k.last = reason
	return false, closed
}

// flush closes the current window if it has ended (or, with force, now) and
// returns its summaries.
func (b *refusalBudget) flush(now time.Time, force bool) []refusalSummary {
	b.mu.Lock()
	defer b.mu.Unlock()
	if force {
		return b.close(now)
	}
	return b.rotate(now)
}

func (b *refusalBudget) rotate(now time.Time) []refusalSummary {
	if b.start.IsZero() {
		b.start = now
		return nil
	}
	if now.Sub(b.start) < b.window {
		return nil
	}
	return b.close(now)
}

func (b *refusalBudget) close(now time.Time) []refusalSummary {
	var out []refusalSummary
	for key, k := range b.keys {
		if k.suppressed > 0 {
			s := refusalSummary{suppressed: k.suppressed, last: k.last, from: b.start, to: now, what: b.what, verb: b.verb}
			if k.principal != nil {
				s.principal = k.principal
			} else {
				s.host = key
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].who() < out[j].who() })
	if b.other.suppressed > 0 {
		out = append(out, refusalSummary{suppressed: b.other.suppressed, last: b.other.last, from: b.start, to: now, what: b.what, verb: b.verb})
	}
	b.start, b.logged, b.other = now, 0, keyRefusals{}
	clear(b.keys)
	return out
}

// peerHost is the address without its port: one client opening new connections
// (new source ports) is still one host. IPv6 addresses count by their /64, which
// one host or site usually holds whole: otherwise every address in it would be a
// host of its own.
func peerHost(peer string) string {
	h, _, err := net.SplitHostPort(peer)
	if err != nil {
		h = peer
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.Is6() && !ip.Is4In6() {
		return netip.PrefixFrom(ip.WithZone(""), 64).Masked().String()
	}
	return h
}
