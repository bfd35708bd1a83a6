package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

func TestRefusalBudget(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	b := newRefusalBudget(time.Minute, 2, 5, 3)

	// Per host: the first two refusals are recorded, the rest counted. A new
	// source port is the same host.
	var got []bool
	for i := range 4 {
		rec, closed := b.admit(fmt.Sprintf("10.0.0.1:%d", 4000+i), "bad token", t0)
		if closed != nil {
			t.Fatalf("admit closed a window early: %v", closed)
		}
		got = append(got, rec)
	}
	if fmt.Sprint(got) != "[true true false false]" {
		t.Errorf("records for one host = %v, want [true true false false]", got)
	}
	// Proxy-wide: 5 individual records per window at most.
	b.admit("10.0.0.2:1", "r", t0)
	b.admit("10.0.0.2:1", "r", t0)
	if rec, _ := b.admit("10.0.0.3:1", "r", t0); !rec {
		t.Error("5th record of the window refused, want recorded")
	}
	if rec, _ := b.admit("10.0.0.3:1", "r3", t0); rec {
		t.Error("6th record of the window recorded, want it counted (global budget)")
	}
	// Hosts beyond the table are counted together.
	if rec, _ := b.admit("[2001:db8::1]:443", "v6", t0); rec {
		t.Error("4th host recorded, want it counted with the other hosts")
	}

	if s := b.flush(t0.Add(59*time.Second), false); s != nil {
		t.Errorf("flush before the window ended = %v, want nothing", s)
	}
	sums := b.flush(t0.Add(time.Minute), false)
	if len(sums) != 3 {
		t.Fatalf("summaries = %+v, want 10.0.0.1, 10.0.0.3 and other hosts", sums)
	}
	if sums[0].host != "10.0.0.1" || sums[0].suppressed != 2 || sums[1].host != "10.0.0.3" || sums[1].suppressed != 1 || sums[2].host != "" || sums[2].suppressed != 1 {
		t.Errorf("summaries = %+v", sums)
	}
	if r := sums[0].reason(); !strings.Contains(r, "2 more unauthenticated calls from 10.0.0.1") || !strings.Contains(r, "bad token") {
		t.Errorf("summary reason = %q", r)
	}
	if r := sums[2].reason(); !strings.Contains(r, "from other hosts") || !strings.Contains(r, "v6") {
		t.Errorf("other hosts' summary reason = %q", r)
	}

	// The next window starts empty; a forced flush closes it at once.
	if rec, _ := b.admit("10.0.0.1:9", "x", t0.Add(61*time.Second)); !rec {
		t.Error("first refusal of a new window not recorded")
	}
	b.admit("10.0.0.1:9", "x", t0.Add(61*time.Second))
	b.admit("10.0.0.1:9", "y", t0.Add(61*time.Second))
	if sums := b.flush(t0.Add(62*time.Second), true); len(sums) != 1 || sums[0].suppressed != 1 || sums[0].last != "y" {
		t.Errorf("forced flush = %+v, want one refusal from 10.0.0.1", sums)
	}
}

// TestRefusalBudgetManyHosts: callers spread over many addresses still write a
// bounded number of records per window, and an IPv6 /64 is one host.
func TestRefusalBudgetManyHosts(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	b := newRefusalBudget(time.Minute, 10, 600, 100)
	recorded := 0
	for i := range 10000 {
		peer := fmt.Sprintf("[2001:db8:%x:%x::1]:443", i/256, i%256)
		if rec, _ := b.admit(peer, "no certificate", t0); rec {
			recorded++
		}
	}
	sums := b.flush(t0.Add(time.Minute), false)
	if recorded+len(sums) > 600+100+1 {
		t.Errorf("10,000 hosts: %d records and %d summaries, want at most 701 in all", recorded, len(sums))
	}
	total := recorded
	for _, s := range sums {
		total += s.suppressed
	}
	if total != 10000 {
		t.Errorf("records plus summarised refusals = %d, want every one of the 10,000 counted", total)
	}
	if last := sums[len(sums)-1]; last.host != "" {
		t.Errorf("last summary is for %q, want the other hosts", last.host)
	}

	// Every address of one /64, with new source ports: one host.
	for i := range 50 {
		b.admit(fmt.Sprintf("[2001:db8:1:2::%x]:%d", i+1, 1000+i), "r", t0.Add(time.Minute))
	}
	sums = b.flush(t0.Add(2*time.Minute), false)
	if len(sums) != 1 || sums[0].host != "2001:db8:1:2::/64" || sums[0].suppressed != 40 {
		t.Errorf("one /64: summaries %+v, want one for 2001:db8:1:2::/64 with 40 refusals", sums)
	}
	if h := peerHost("192.0.2.7:5000"); h != "192.0.2.7" {
		t.Errorf("peerHost(IPv4) = %q", h)
	}
}

// TestPrincipalRefusalBudget: a principal's refusals are recorded one by one
// until their records hold the per-principal bytes (the crossing one still
// recorded), then counted for one summary per principal naming it; other
// principals keep their own budget; principals beyond the table are always
// recorded, since a summary must name who was refused.
func TestPrincipalRefusalBudget(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	b := newPrincipalRefusalBudget(time.Minute, 1000, 10000, 2)
	alice := &audit.Principal{ID: "spiffe://example.org/user/alice", Kind: "human", Groups: []string{"sre"}, Authn: "mtls"}
	bob := &audit.Principal{ID: "spiffe://example.org/user/bob", Kind: "human", Authn: "jwt"}
	carol := &audit.Principal{ID: "spiffe://example.org/user/carol", Kind: "human", Authn: "jwt"}
	var got []bool
	for _, cost := range []int64{400, 400, 400, 10, 10} {
		rec, _ := b.admitPrincipal(alice, "/a.B/Put: denied", cost, t0)
		got = append(got, rec)
	}
	if fmt.Sprint(got) != "[true true true false false]" {
		t.Errorf("alice's refusals recorded = %v, want the first three (1200 bytes ≥ 1000), then counted", got)
	}
	if rec, _ := b.admitPrincipal(bob, "r", 5000, t0); !rec {
		t.Error("bob's first refusal not recorded: alice's refusals must not use up his budget")
	}
	for range 3 {
		if rec, _ := b.admitPrincipal(carol, "r", 5000, t0); !rec {
			t.Error("carol (beyond the table) not recorded, want every refusal recorded")
		}
	}
	sums := b.flush(t0.Add(time.Minute), false)
	if len(sums) != 1 || sums[0].principal != alice || sums[0].suppressed != 2 {
		t.Fatalf("summaries = %+v, want alice's 2", sums)
	}
	r := sums[0].record(t0.Add(time.Minute))
	if r.Principal != alice || r.Decision != audit.DecisionDeny || r.Method != "" ||
		!strings.Contains(r.Reasons[0], "2 more refused messages of spiffe://example.org/user/alice between 2026-11-26T10:00:00Z and 2026-11-26T10:01:00Z") ||
		!strings.Contains(r.Reasons[0], "(last: /a.B/Put: denied)") {
		t.Errorf("summary record = %+v %q", r, r.Reasons)
	}
	// Proxy-wide: past global, every principal's refusals are counted.
	g := newPrincipalRefusalBudget(time.Minute, 1000, 1500, 10)
	g.admitPrincipal(alice, "r", 900, t0)
	g.admitPrincipal(bob, "r", 900, t0)
	if rec, _ := g.admitPrincipal(carol, "r", 1, t0); rec {
		t.Error("refusal past the global budget recorded")
	}
}
