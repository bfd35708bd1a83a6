package breakglass

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/identity"
	"github.com/ztp-dev/ztp/internal/testclock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Principals of the tests.
var (
	alice    = identity.Principal{ID: "spiffe://example.org/user/alice", Kind: identity.KindHuman, Groups: []string{"sre"}, Authn: identity.AuthnMTLS}
	bob      = identity.Principal{ID: "spiffe://example.org/user/bob", Kind: identity.KindHuman, Groups: []string{"sre"}, Authn: identity.AuthnMTLS}
	lead1    = identity.Principal{ID: "spiffe://example.org/lead/carol", Kind: identity.KindHuman, Groups: []string{"sre", "sre-leads"}, Authn: identity.AuthnMTLS}
	lead2    = identity.Principal{ID: "dave@example.com", Kind: identity.KindHuman, Groups: []string{"sre-leads"}, Authn: identity.AuthnJWT}
	leadBot  = identity.Principal{ID: "spiffe://example.org/ns/prod/sa/approver-bot", Kind: identity.KindAutomation, Groups: []string{"sre-leads"}, Authn: identity.AuthnMTLS}
	deployer = identity.Principal{ID: "spiffe://example.org/ns/prod/sa/deployer", Kind: identity.KindAutomation, Groups: []string{"deployers"}, Authn: identity.AuthnMTLS}
)

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// env is a Store on a real audit log in a temporary directory.
type env struct {
	t     testing.TB
	path  string
	clock *testclock.Clock
	audit *audit.Store
	store *Store
	opts  Options
}

// newEnv opens an audit log and a Store with 1 approval from sre-leads and
// a 1h maximum, adjusted by mod. Cleanup stops and closes both and checks
// the file.
func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "audit.db"), clock: testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))}
	e.opts = Options{MaxDuration: time.Hour, ApprovalsRequired: 1, ApproverGroups: []string{"sre-leads"}, Now: e.clock.Now}
	if mod != nil {
		mod(&e.opts)
	}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *env) open() {
	e.t.Helper()
	a, err := audit.Open(e.path, audit.Options{Now: e.clock.Now})
	if err != nil {
		e.t.Fatalf("audit.Open: %v", err)
	}
	e.audit = a
	o := e.opts
	if o.Audit == nil {
		o.Audit = a
	}
	s, err := Open(testCtx(e.t), a.DB(), o)
	if err != nil {
		a.Close()
		e.t.Fatalf("Open: %v", err)
	}
	e.store = s
}

// close stops the store and closes the audit log, verifying its chain; safe
// to call twice.
func (e *env) close() {
	if e.store != nil {
		e.store.Stop(context.Background())
		e.store = nil
	}
	if e.audit != nil {
		if res, err := e.audit.Verify(context.Background()); err != nil || !res.OK() {
			e.t.Errorf("audit chain: %+v, %v", res, err)
		}
		if err := e.audit.Check(); err != nil {
			e.t.Errorf("bbolt check: %v", err)
		}
		e.audit.Close()
		e.audit = nil
	}
}

func (e *env) restart() {
	e.t.Helper()
	e.close()
	e.open()
}

// records returns the breakglass records of grant id (all breakglass records
// for ""), in order.
func (e *env) records(id string) []*audit.Record {
	e.t.Helper()
	var out []*audit.Record
	err := e.audit.Scan(testCtx(e.t), 1, func(r *audit.Record) error {
		if r.Type == audit.TypeBreakglass && (id == "" || r.BreakglassGrant == id) {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("Scan: %v", err)
	}
	return out
}

// events returns the first word of each record's detail: the event names.
func events(recs []*audit.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i], _, _ = strings.Cut(r.Detail, ":")
	}
	return out
}

func (e *env) request(p identity.Principal, r GrantRequest) Grant {
	e.t.Helper()
	g, err := e.store.Request(testCtx(e.t), p, r)
	if err != nil {
		e.t.Fatalf("Request(%s, %+v) = %v", p.ID, r, err)
	}
	return g
}

func (e *env) approve(p identity.Principal, id string) Grant {
	e.t.Helper()
	g, err := e.store.Approve(testCtx(e.t), p, id, "")
	if err != nil {
		e.t.Fatalf("Approve(%s, %s) = %v", p.ID, id, err)
	}
	return g
}

// flakyAuditor passes appends to a real store until failing is set.
type flakyAuditor struct {
	next    Auditor
	failing atomic.Bool
}

var errDiskGone = errors.New("disk gone")

func (f *flakyAuditor) Append(ctx context.Context, r *audit.Record) (uint64, error) {
	if f.failing.Load() {
		return 0, errDiskGone
	}
	return f.next.Append(ctx, r)
}

// chanNotifier delivers events on a channel (buffered: Notify must not block).
type chanNotifier chan Event

func (c chanNotifier) Notify(e Event) {
	select {
	case c <- e:
	default:
		panic("test notifier full")
	}
}

func wantErr(t testing.TB, call string, err, want error, msgPart string) {
	t.Helper()
	if !errors.Is(err, want) || !strings.Contains(err.Error(), msgPart) {
		t.Errorf("%s = %v; want %v containing %q", call, err, want, msgPart)
	}
}
