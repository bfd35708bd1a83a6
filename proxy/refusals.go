package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// refusalBudget bounds the audit records that callers who never authenticated
// can make the proxy write. Every such call is refused, but only the first
// perHost refusals of each peer host in a window, and at most global of them
// proxy-wide, get a record of their own; the rest are counted per host and
// audited as one summary record per host when the window closes. Without it,
// anyone who can reach the port (with tls.client_auth: verify_if_given) could
// make the proxy fsync a record per call and fill its disk.
//
// Authenticated callers are accountable and rate-limited per principal; their
// refusals are always recorded one by one.
type refusalBudget struct {
	window   time.Duration
	perHost  int
	global   int
	maxHosts int // hosts tracked per window; refusals from more hosts count as "other"
	// what the budget counts and what happened to them, for the summaries:
	// "unauthenticated calls" "refused" when empty.
	what, verb string

	mu     sync.Mutex
	start  time.Time
	logged int // individual records this window
	hosts  map[string]*hostRefusals
	other  hostRefusals // from hosts beyond maxHosts
}

type hostRefusals struct {
	logged, suppressed int
	last               string // reason of the last suppressed refusal
}

// refusalSummary is what a closed window says about one host's unrecorded refusals.
type refusalSummary struct {
	host       string // "" for hosts beyond the table
	suppressed int
	last       string
	from, to   time.Time
	what, verb string // see refusalBudget
}

func (s refusalSummary) reason() string {
	who := "from " + s.host
	if s.host == "" {
		who = "from other hosts"
	}
	what, verb := s.what, s.verb
	if what == "" {
		what, verb = "unauthenticated calls", "refused"
	}
	return fmt.Sprintf("%d more %s %s %s between %s and %s without a record of their own (last: %s)",
		s.suppressed, what, who, verb, s.from.UTC().Format(time.RFC3339), s.to.UTC().Format(time.RFC3339), s.last)
}

func newRefusalBudget(window time.Duration, perHost, global, maxHosts int) *refusalBudget {
	return &refusalBudget{window: window, perHost: perHost, global: global, maxHosts: maxHosts, hosts: map[string]*hostRefusals{}}
}

// admit reports whether a refusal of a call from peer (host:port) gets its own
// record. It also returns the summaries of a window that has closed, which the
// caller must audit.
func (b *refusalBudget) admit(peer, reason string, now time.Time) (record bool, closed []refusalSummary) {
	host := peerHost(peer)
	b.mu.Lock()
	defer b.mu.Unlock()
	closed = b.rotate(now)
	h := b.hosts[host]
	if h == nil {
		if len(b.hosts) < b.maxHosts {
			h = &hostRefusals{}
			b.hosts[host] = h
		} else {
			h = &b.other
		}
	}
	if h != &b.other && h.logged < b.perHost && b.logged < b.global {
		h.logged++
		b.logged++
		return true, closed
	}
	h.suppressed++
	h.last = reason
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
	for host, h := range b.hosts {
		if h.suppressed > 0 {
			out = append(out, refusalSummary{host: host, suppressed: h.suppressed, last: h.last, from: b.start, to: now, what: b.what, verb: b.verb})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].host < out[j].host })
	if b.other.suppressed > 0 {
		out = append(out, refusalSummary{suppressed: b.other.suppressed, last: b.other.last, from: b.start, to: now, what: b.what, verb: b.verb})
	}
	b.start, b.logged, b.other = now, 0, hostRefusals{}
	clear(b.hosts)
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
