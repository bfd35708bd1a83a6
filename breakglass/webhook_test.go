package breakglass

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// delivery is one POST the test receiver saw.
type delivery struct {
	header http.Header
	event  Event
	raw    map[string]any
}

// receiver is an httptest server answering with the status codes in codes
// (then 200), reporting every request on got.
type receiver struct {
	*httptest.Server
	got   chan delivery
	calls atomic.Int32
}

func newReceiver(t *testing.T, codes ...int) *receiver {
	t.Helper()
	r := &receiver{got: make(chan delivery, 64)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		n := int(r.calls.Add(1))
		body, _ := io.ReadAll(req.Body)
		d := delivery{header: req.Header.Clone()}
		if err := json.Unmarshal(body, &d.event); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		_ = json.Unmarshal(body, &d.raw)
		r.got <- d
		if n <= len(codes) {
			w.WriteHeader(codes[n-1])
		}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-testCtx(t).Done():
		t.Fatal("no webhook delivery")
		return delivery{}
	}
}

func newWebhook(t *testing.T, e *env, url string, mod func(*WebhookOptions)) *Webhook {
	t.Helper()
	o := WebhookOptions{URL: url, Audit: e.audit, Now: e.clock.Now, Backoff: time.Millisecond, Attempts: 3}
	if mod != nil {
		mod(&o)
	}
	w, err := NewWebhook(o)
	if err != nil {
		t.Fatalf("NewWebhook: %v", err)
	}
	t.Cleanup(func() { w.Stop(context.Background()) })
	return w
}

// notifyFailures returns the audit records of failed notifications.
func (e *env) notifyFailures() []string {
	var out []string
	for _, r := range e.records("") {
		if strings.HasPrefix(r.Detail, "notification failed") {
			out = append(out, r.BreakglassGrant+" "+r.Detail)
		}
	}
	return out
}

func TestWebhookDeliversEveryChange(t *testing.T) {
	rcv := newReceiver(t)
	var e *env
	var wh *Webhook
	e = newEnv(t, func(o *Options) { o.Notifier = notifierFunc(func(ev Event) { wh.Notify(ev) }) })
	wh = newWebhook(t, e, rcv.URL, nil)

	g := e.request(alice, GrantRequest{Reason: "INC-10", Ticket: "INC-10", Duration: 15 * time.Minute, Scope: []string{"/etcdserverpb.KV/*"}})
	e.clock.Advance(time.Minute)
	e.approve(lead1, g.ID)

	for _, want := range []struct{ event, actor, state string }{
		{"requested", alice.ID, "pending"},
		{"approved", lead1.ID, "active"},
		{"activated", lead1.ID, "active"},
	} {
		d := rcv.next(t)
		if d.event.Event != want.event || d.event.Actor != want.actor || d.event.Grant.ID != g.ID || string(d.event.Grant.State) != want.state {
			t.Errorf("delivery = %s by %s of %s (%s); want %s by %s (%s)", d.event.Event, d.event.Actor, d.event.Grant.ID, d.event.Grant.State, want.event, want.actor, want.state)
		}
		if d.header.Get("Content-Type") != "application/json" || d.header.Get("X-Ztp-Event") != want.event ||
			d.header.Get("X-Ztp-Delivery") == "" {
			t.Errorf("headers %v; want JSON, X-Ztp-Event %s and a delivery id", d.header, want.event)
		}
		grant, _ := d.raw["grant"].(map[string]any)
		if grant["reason"] != "INC-10" || grant["ticket"] != "INC-10" || grant["duration"] != "15m0s" {
			t.Errorf("notified grant %v; want reason, ticket and duration 15m0s", grant)
		}
	}
	if f := e.notifyFailures(); len(f) != 0 {
		t.Errorf("failure records %q, want none", f)
	}
}

type notifierFunc func(Event)

func (f notifierFunc) Notify(e Event) { f(e) }

func TestWebhookRetriesAndAuditsFailure(t *testing.T) {
	tests := []struct {
		name        string
		codes       []int
		wantCalls   int
		wantFailure string // "" = delivered
	}{
		{name: "retried until accepted", codes: []int{503, 500}, wantCalls: 3},
		{name: "429 is retried", codes: []int{429}, wantCalls: 2},
		{name: "gives up after the attempts", codes: []int{500, 502, 503}, wantCalls: 3, wantFailure: "after 3 attempt(s): HTTP 503"},
		{name: "a 4xx is not retried", codes: []int{400}, wantCalls: 1, wantFailure: "after 1 attempt(s): HTTP 400 (not retried)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, tt.codes...)
			e := newEnv(t, nil)
			wh := newWebhook(t, e, rcv.URL+"/hook?token=s3cret", nil)
			wh.Notify(Event{Event: EventRequested, AuditSeq: 7, Grant: Grant{ID: "bg-0123456789", State: StatePending}})
			var ids []string
			for range tt.wantCalls {
				ids = append(ids, rcv.next(t).header.Get("X-Ztp-Delivery"))
			}
			wh.Stop(testCtx(t)) // drains: the outcome is final after this
			if n := int(rcv.calls.Load()); n != tt.wantCalls {
				t.Errorf("receiver saw %d POSTs, want %d", n, tt.wantCalls)
			}
			for _, id := range ids {
				if id != "bg-0123456789/7" {
					t.Errorf("X-Ztp-Delivery = %q, want the same id on every retry", id)
				}
			}
			f := e.notifyFailures()
			if tt.wantFailure == "" {
				if len(f) != 0 {
					t.Errorf("failure records %q, want none", f)
				}
				return
			}
			if len(f) != 1 || !strings.Contains(f[0], tt.wantFailure) || !strings.HasPrefix(f[0], "bg-0123456789 ") {
				t.Fatalf("failure records %q, want one for the grant containing %q", f, tt.wantFailure)
			}
			if strings.Contains(f[0], "s3cret") || strings.Contains(f[0], rcv.URL) {
				t.Errorf("failure record %q leaks the webhook URL", f[0])
			}
		})
	}
}

func TestWebhookUnreachableDoesNotLeakURL(t *testing.T) {
	rcv := newReceiver(t)
	url := rcv.URL + "/hook/s3cret"
	rcv.Close() // nothing listens there any more
	e := newEnv(t, nil)
	wh := newWebhook(t, e, url, func(o *WebhookOptions) { o.Attempts = 2 })
	wh.Notify(Event{Event: EventRevoked, Grant: Grant{ID: "bg-aaaaaaaaaa", State: StatePending}})
	wh.Stop(testCtx(t))
	f := e.notifyFailures()
	if len(f) != 1 || !strings.Contains(f[0], "after 2 attempt(s)") {
		t.Fatalf("failure records %q, want one after 2 attempts", f)
	}
	if strings.Contains(f[0], "s3cret") {
		t.Errorf("failure record %q leaks the webhook URL", f[0])
	}
}

// TestWebhookNeverBlocks: with the receiver stuck, Notify returns at once;
// what does not fit in the queue is dropped and audited, and Stop abandons the
// rest when its context ends, auditing each.
func TestWebhookNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 16)
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(release)
	e := newEnv(t, nil)
	wh := newWebhook(t, e, stuck.URL, func(o *WebhookOptions) { o.QueueSize = 2; o.Attempts = 1 })

	wh.Notify(Event{Event: EventRequested, Grant: Grant{ID: "bg-0000000001", State: StatePending}})
	<-entered // the worker holds event 1; the queue is empty
	for i := 2; i <= 6; i++ {
		wh.Notify(Event{Event: EventRequested, Grant: Grant{ID: "bg-000000000" + string(rune('0'+i)), State: StatePending}})
	}
	// Events 2 and 3 are queued, 4..6 dropped.
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel() // give up on delivery at once
	wh.Stop(ctx)

	f := e.notifyFailures()
	var dropped, abandoned int
	for _, r := range f {
		switch {
		case strings.Contains(r, "queue full"):
			dropped++
		case strings.Contains(r, "proxy stopping"), strings.Contains(r, "context canceled"):
			abandoned++
		}
	}
	if dropped != 3 || abandoned != 3 {
		t.Errorf("failure records %q: %d dropped, %d abandoned; want 3 and 3 (every event accounted for)", f, dropped, abandoned)
	}
	wh.Notify(Event{Event: EventExpired, Grant: Grant{ID: "bg-late", State: StatePending}}) // after Stop: ignored, no panic
}

func TestNewWebhookOptions(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct {
		name string
		o    WebhookOptions
	}{
		{"no URL", WebhookOptions{Audit: e.audit}},
		{"not http", WebhookOptions{URL: "ftp://example.com/x", Audit: e.audit}},
		{"no host", WebhookOptions{URL: "http:///x", Audit: e.audit}},
		{"no auditor", WebhookOptions{URL: "http://example.com/x"}},
	} {
		if w, err := NewWebhook(tt.o); err == nil {
			w.Stop(context.Background())
			t.Errorf("NewWebhook(%s) = nil error, want ErrInvalidOptions", tt.name)
		}
	}
}
