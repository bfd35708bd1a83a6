package breakglass

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/identity"
)

// TestPendingBoundPerPerson: one person has at most MaxPending requests
// waiting for approval, under all of their ids; the next request is refused
// naming the waiting ones, and a slot frees as soon as one is decided, lapses
// or is withdrawn.
func TestPendingBoundPerPerson(t *testing.T) {
	e := newEnv(t, nil)
	aliceCert := alice
	aliceCert.Person = "alice@example.org"
	aliceToken := identity.Principal{ID: "alice@example.org", Kind: identity.KindHuman, Groups: []string{"sre"}, Authn: identity.AuthnJWT}

	var ids []string
	for i := range DefaultMaxPending {
		p := aliceCert
		if i == 1 {
			p = aliceToken // the same person under another id counts too
		}
		ids = append(ids, e.request(p, GrantRequest{Reason: "INC-1"}).ID)
		e.clock.Advance(time.Second)
	}
	before := len(e.records(""))
	for _, p := range []identity.Principal{aliceCert, aliceToken} {
		_, err := e.store.Request(testCtx(t), p, GrantRequest{Reason: "INC-1 again"})
		wantErr(t, "request by "+p.ID+" over the bound", err, ErrTooManyPending, "you have 3 request(s) waiting for approval ("+strings.Join(ids, ", ")+")")
		if err != nil && !strings.Contains(err.Error(), "breakglass.max_pending_per_person is 3") {
			t.Errorf("refusal %q does not name the config key", err)
		}
		if got := toStatus(err); !strings.Contains(got.Error(), "ResourceExhausted") {
			t.Errorf("status of the refusal = %v, want ResourceExhausted", got)
		}
	}
	if n := len(e.records("")); n != before {
		t.Errorf("refused requests wrote %d breakglass records, want none", n-before)
	}
	// Another person is not affected.
	e.request(bob, GrantRequest{Reason: "INC-2"})

	// Denied, revoked, lapsed or approved: each frees a slot.
	free := []struct {
		name string
		do   func()
	}{
		{"denied", func() {
			if _, err := e.store.Deny(testCtx(t), lead1, ids[0], "no"); err != nil {
				t.Fatal(err)
			}
		}},
		{"revoked by its requester", func() {
			if _, err := e.store.Revoke(testCtx(t), aliceToken, ids[1], "not needed"); err != nil {
				t.Fatal(err)
			}
		}},
		{"approved", func() { e.approve(lead1, ids[2]) }},
	}
	for _, f := range free {
		f.do()
		g, err := e.store.Request(testCtx(t), aliceCert, GrantRequest{Reason: "after " + f.name})
		if err != nil {
			t.Fatalf("request after one was %s: %v", f.name, err)
		}
		ids = append(ids, g.ID)
		if _, err := e.store.Request(testCtx(t), aliceCert, GrantRequest{Reason: "one more"}); err == nil {
			t.Fatalf("a second request after one was %s was accepted; want the bound to hold", f.name)
		}
	}
	e.clock.Advance(time.Hour) // every pending request lapses unapproved
	if _, err := e.store.Request(testCtx(t), aliceCert, GrantRequest{Reason: "after the lapse"}); err != nil {
		t.Errorf("request after the pending ones lapsed: %v", err)
	}
}

// TestPendingBoundBurstNotifies: 30 requests of one person in a burst, from
// many goroutines, make exactly MaxPending grants, audit records and
// notifications; the webhook receiver sees no more.
func TestPendingBoundBurstNotifies(t *testing.T) {
	rcv := newReceiver(t)
	var wh *Webhook
	var notified atomic.Int32
	e := newEnv(t, func(o *Options) {
		o.Notifier = notifierFunc(func(ev Event) { notified.Add(1); wh.Notify(ev) })
	})
	wh = newWebhook(t, e, rcv.URL, nil)

	var wg sync.WaitGroup
	var accepted, refused atomic.Int32
	for range 30 {
		wg.Go(func() {
			_, err := e.store.Request(testCtx(t), alice, GrantRequest{Reason: "INC-3"})
			switch {
			case err == nil:
				accepted.Add(1)
			case strings.Contains(err.Error(), ErrTooManyPending.Error()):
				refused.Add(1)
			default:
				t.Errorf("Request: %v", err)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != DefaultMaxPending || refused.Load() != 30-DefaultMaxPending {
		t.Errorf("accepted %d, refused %d; want %d and %d", accepted.Load(), refused.Load(), DefaultMaxPending, 30-DefaultMaxPending)
	}
	if n := len(e.records("")); n != DefaultMaxPending {
		t.Errorf("%d breakglass records, want %d", n, DefaultMaxPending)
	}
	for range DefaultMaxPending {
		rcv.next(t)
	}
	wh.Stop(testCtx(t))
	if n, d := notified.Load(), rcv.calls.Load(); n != DefaultMaxPending || d != DefaultMaxPending {
		t.Errorf("%d notifications, %d webhook deliveries; want %d each", n, d, DefaultMaxPending)
	}
}
