package breakglass

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/identity"
)

// bucketGrants holds one JSON value per grant, keyed by grant id, in the
// audit log's file (the audit package owns "records" and "meta").
var bucketGrants = []byte("breakglass_grants")

// Defaults for Options.
const (
	DefaultAuditTimeout  = 5 * time.Second
	DefaultSweepInterval = time.Second
	// DefaultMaxPending is Options.MaxPending's default: enough for an incident
	// that needs a few scopes at once, few enough that one person cannot flood
	// the approvers (each request is an audit record and a notification).
	DefaultMaxPending = 3
)

// Auditor durably appends audit records; a nil error means committed.
type Auditor interface {
	Append(ctx context.Context, r *audit.Record) (uint64, error)
}

// Notifier hears of every state change after it was audited and persisted.
// Notify must not block.
type Notifier interface {
	Notify(Event)
}

// Event is one state change, as notified.
type Event struct {
	Event   string    `json:"event"` // EventRequested, …
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor,omitempty"` // who caused it; empty for expiry
	Comment string    `json:"comment,omitempty"`
	// AuditSeq is the seq of the audit record of this change: receivers can
	// use it to de-duplicate retried deliveries and to find the record.
	AuditSeq uint64 `json:"audit_seq"`
	Grant    Grant  `json:"grant"`
}

// Options configure a Store.
type Options struct {
	MaxDuration       time.Duration // breakglass.max_duration (required)
	ApprovalsRequired int           // 0: a grant is active as soon as it is requested
	ApproverGroups    []string      // groups whose humans may approve, deny and revoke
	// MaxPending bounds the requests one person (see PersonOf) may have
	// waiting for approval at once (default DefaultMaxPending); the next one
	// is refused with ErrTooManyPending naming them.
	MaxPending int

	Audit    Auditor          // required: every state change is recorded here first
	Notifier Notifier         // optional
	Now      func() time.Time // default time.Now
	// AuditTimeout bounds one audit append (default DefaultAuditTimeout).
	AuditTimeout time.Duration
	// SweepInterval is how often the sweeper records expirations (default
	// DefaultSweepInterval). Expiry itself never waits for it.
	SweepInterval time.Duration
	Logger        *slog.Logger
	// PersonOf names the person behind an id under the principal rules in
	// force now ("" when none names one). Approvals compare the requester and
	// earlier approvers by the persons stored with the grant and by the ones
	// the current rules give, so that rules added or changed after a request
	// still keep its requester from approving it under another id.
	PersonOf func(id string) string
}

// Store holds the grants: durable in bbolt, indexed in memory for the
// per-message lookup. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	opts Options
	log  *slog.Logger

	mu     sync.Mutex // serializes state changes; guards grants
	grants map[string]*Grant

	// index is rebuilt under mu after every change and read lock-free by Active.
	index atomic.Pointer[index]

	kick      chan struct{} // wakes the sweeper early (an expired grant was seen)
	stop      chan struct{}
	done      chan struct{}
	startOnce sync.Once
	stopOnce  sync.Once
}

// index maps a principal id to its active grants.
type index struct {
	byPrincipal map[string][]activeEntry
}

type activeEntry struct {
	info  ActiveGrant
	scope []string
}

// ActiveGrant is what the proxy needs of an active grant.
type ActiveGrant struct {
	ID      string
	Reason  string
	Ticket  string
	Expires time.Time
}

// Open loads the grants kept in db (creating their bucket if needed), records
// the expiry of grants that ran out while the proxy was down, and returns the
// store. Call Start to run the sweeper.
func Open(ctx context.Context, db *bolt.DB, opts Options) (*Store, error) {
	if db == nil || opts.Audit == nil {
		return nil, fmt.Errorf("%w: a bbolt handle and an Auditor are required", ErrInvalidOptions)
	}
	if opts.MaxDuration <= 0 {
		return nil, fmt.Errorf("%w: MaxDuration must be positive", ErrInvalidOptions)
	}
	if opts.ApprovalsRequired < 0 || (opts.ApprovalsRequired > 0 && len(opts.ApproverGroups) == 0) {
		return nil, fmt.Errorf("%w: ApprovalsRequired > 0 needs ApproverGroups", ErrInvalidOptions)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AuditTimeout <= 0 {
		opts.AuditTimeout = DefaultAuditTimeout
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = DefaultSweepInterval
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	opts.ApproverGroups = slices.Clone(opts.ApproverGroups)
	s := &Store{
		db: db, opts: opts, log: opts.Logger,
		grants: map[string]*Grant{},
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketGrants)
		if err != nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			g := &Grant{}
			if err := json.Unmarshal(v, g); err != nil || g.ID != string(k) {
				return fmt.Errorf("%w: key %q: %v", ErrCorrupt, k, err)
			}
			s.grants[g.ID] = g
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("breakglass: load grants: %w", err)
	}
	s.mu.Lock()
	s.rebuild()
	s.mu.Unlock()
	if err := s.Sweep(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Start runs the sweeper, which records expirations as audit records every
// SweepInterval and soon after Active saw an expired grant.
func (s *Store) Start() {
	s.startOnce.Do(func() { go s.sweeper() })
}

// Stop ends the sweeper and waits for it (until ctx ends). It is safe to
// call more than once, and without Start.
func (s *Store) Stop(ctx context.Context) {
	s.stopOnce.Do(func() { close(s.stop) })
	s.startOnce.Do(func() { close(s.done) }) // never started: nothing to wait for
	select {
	case <-s.done:
	case <-ctx.Done():
	}
}

func (s *Store) sweeper() {
	defer close(s.done)
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.AuditTimeout)
		if err := s.Sweep(ctx); err != nil {
			s.log.Error("break-glass sweep failed; will retry", "err", err)
		}
		cancel()
	}
}

// Active returns principalID's active grant covering method at now. It is
// called for every message: it takes no lock and does not allocate. A grant
// is unusable from its expiry instant on, whether or not it was swept.
func (s *Store) Active(principalID, method string, now time.Time) (ActiveGrant, bool) {
	ix := s.index.Load()
	if ix == nil {
		return ActiveGrant{}, false
	}
	for i := range ix.byPrincipal[principalID] {
		e := &ix.byPrincipal[principalID][i]
		if !now.Before(e.info.Expires) {
			s.wakeSweeper()
			continue
		}
		if covers(e.scope, method) {
			return e.info, true
		}
	}
	return ActiveGrant{}, false
}

func (s *Store) wakeSweeper() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// rebuild publishes a new index of the active grants. Caller holds mu.
func (s *Store) rebuild() {
	ix := &index{byPrincipal: map[string][]activeEntry{}}
	for _, g := range s.grants {
		if g.State == StateActive {
			ix.byPrincipal[g.Requester] = append(ix.byPrincipal[g.Requester], activeEntry{
				info:  ActiveGrant{ID: g.ID, Reason: g.Reason, Ticket: g.Ticket, Expires: g.Expires},
				scope: slices.Clone(g.Scope),
			})
		}
	}
	// Deterministic choice when several grants cover a method: the one that
	// lasts longest.
	for _, es := range ix.byPrincipal {
		slices.SortFunc(es, func(a, b activeEntry) int {
			return cmp.Or(b.info.Expires.Compare(a.info.Expires), strings.Compare(a.info.ID, b.info.ID))
		})
	}
	s.index.Store(ix)
}

// Request creates a grant for p. With ApprovalsRequired 0 it is active at
// once; otherwise it is pending until enough approvals arrive or
// MaxDuration passes.
func (s *Store) Request(ctx context.Context, p identity.Principal, r GrantRequest) (Grant, error) {
	if p.Kind != identity.KindHuman {
		return Grant{}, fmt.Errorf("%w: only humans may request break-glass (%s is %s)", ErrNotAllowed, p.ID, p.Kind)
	}
	r, err := r.normalize(s.opts.MaxDuration)
	if err != nil {
		return Grant{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if ids := s.pendingOf(p, now); len(ids) >= s.opts.MaxPending {
		return Grant{}, fmt.Errorf("%w: you have %d request(s) waiting for approval (%s) and breakglass.max_pending_per_person is %d; have one approved or denied, or revoke one you no longer need (ztpctl breakglass revoke ID), then ask again",
			ErrTooManyPending, len(ids), strings.Join(ids, ", "), s.opts.MaxPending)
	}
	id, err := s.newID()
	if err != nil {
		return Grant{}, err
	}
	g := &Grant{
		ID: id, Requester: p.ID, RequesterPerson: p.Person, Reason: r.Reason, Ticket: r.Ticket,
		Scope: r.Scope, Duration: r.Duration, State: StatePending,
		ApprovalsRequired: s.opts.ApprovalsRequired, Created: now,
	}
	detail := fmt.Sprintf("for %s, scope %s, ", g.Duration, strings.Join(g.Scope, " "))
	evs := []event{{name: EventRequested, actor: &p}}
	if g.ApprovalsRequired == 0 {
		detail += "self-service (no approval required)"
		activate(g, now)
		evs = append(evs, event{name: EventActivated, actor: &p, detail: activatedDetail(g)})
	} else {
		g.ApproveBy = now.Add(s.opts.MaxDuration)
		detail += fmt.Sprintf("%d approval(s) required from %s before %s",
			g.ApprovalsRequired, strings.Join(s.opts.ApproverGroups, ", "), g.ApproveBy.UTC().Format(time.RFC3339))
	}
	evs[0].detail = detail
	if err := s.commit(ctx, g, now, evs); err != nil {
		return Grant{}, err
	}
	return g.view(now), nil
}

// pendingOf lists, oldest first, the grants p's person (under any of its ids,
// see Grant.requestedBy) requested that are pending at now. Caller holds mu.
func (s *Store) pendingOf(p identity.Principal, now time.Time) []string {
	var gs []*Grant
	for _, g := range s.grants {
		if st, _ := g.at(now); st == StatePending && g.requestedBy(p, s.opts.PersonOf) {
			gs = append(gs, g)
		}
	}
	slices.SortFunc(gs, func(a, b *Grant) int { return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID)) })
	ids := make([]string, len(gs))
	for i, g := range gs {
		ids[i] = g.ID
	}
	return ids
}

func activate(g *Grant, now time.Time) {
	g.State = StateActive
	g.Activated = now
	g.Expires = now.Add(g.Duration)
}

func activatedDetail(g *Grant) string {
	return fmt.Sprintf("until %s, scope %s", g.Expires.UTC().Format(time.RFC3339), strings.Join(g.Scope, " "))
}

// Approve adds p's approval to a pending grant, activating it when it has
// enough.
func (s *Store) Approve(ctx context.Context, p identity.Principal, id, comment string) (Grant, error) {
	comment, err := checkComment(comment)
	if err != nil {
		return Grant{}, err
	}
	if err := s.checkApprover(p, "approve"); err != nil {
		return Grant{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	g, err := s.pending(id, now, "approved")
	if err != nil {
		return Grant{}, err
	}
	if g.requestedBy(p, s.opts.PersonOf) {
		return Grant{}, fmt.Errorf("%w: you requested %s; another member of %s must approve it", ErrSelfApproval, id, strings.Join(s.opts.ApproverGroups, ", "))
	}
	if g.approvedByPerson(p, s.opts.PersonOf) {
		return Grant{}, fmt.Errorf("%w: you already approved %s; %d of %d approvals so far", ErrAlreadyApproved, id, len(g.Approvals), g.ApprovalsRequired)
	}
	g.Approvals = append(g.Approvals, Approval{Approver: p.ID, Person: p.Person, Time: now, Comment: comment})
	counted := g.countedApprovals(s.opts.PersonOf)
	evs := []event{{name: EventApproved, actor: &p, comment: comment,
		detail: fmt.Sprintf("%d of %d", counted, g.ApprovalsRequired)}}
	if counted >= g.ApprovalsRequired {
		activate(g, now)
		evs = append(evs, event{name: EventActivated, actor: &p, detail: activatedDetail(g)})
	}
	if err := s.commit(ctx, g, now, evs); err != nil {
		return Grant{}, err
	}
	return g.view(now), nil
}

// Deny refuses a pending grant.
func (s *Store) Deny(ctx context.Context, p identity.Principal, id, comment string) (Grant, error) {
	comment, err := checkComment(comment)
	if err != nil {
		return Grant{}, err
	}
	if err := s.checkApprover(p, "deny"); err != nil {
		return Grant{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	g, err := s.pending(id, now, "denied")
	if err != nil {
		return Grant{}, err
	}
	if g.requestedBy(p, s.opts.PersonOf) {
		return Grant{}, fmt.Errorf("%w: you requested %s; to withdraw it, revoke it", ErrSelfApproval, id)
	}
	g.State, g.Ended, g.EndedBy = StateDenied, now, p.ID
	if err := s.commit(ctx, g, now, []event{{name: EventDenied, actor: &p, comment: comment}}); err != nil {
		return Grant{}, err
	}
	return g.view(now), nil
}

// Revoke ends a pending or active grant; its requester or an approver may.
func (s *Store) Revoke(ctx context.Context, p identity.Principal, id, comment string) (Grant, error) {
	comment, err := checkComment(comment)
	if err != nil {
		return Grant{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	stored, ok := s.grants[id]
	if !ok {
		return Grant{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if stored.Requester != p.ID && s.checkApprover(p, "revoke") != nil {
		return Grant{}, fmt.Errorf("%w: only the requester of %s or a human in %s may revoke it", ErrNotAllowed, id, strings.Join(s.opts.ApproverGroups, ", "))
	}
	if st, _ := stored.at(now); st.Ended() {
		return Grant{}, fmt.Errorf("%w: %s is already %s", ErrWrongState, id, st)
	}
	g := stored.clone()
	g.State, g.Ended, g.EndedBy = StateRevoked, now, p.ID
	if err := s.commit(ctx, g, now, []event{{name: EventRevoked, actor: &p, comment: comment}}); err != nil {
		return Grant{}, err
	}
	return g.view(now), nil
}

// checkApprover refuses automation and humans outside the approver groups.
func (s *Store) checkApprover(p identity.Principal, action string) error {
	if p.Kind != identity.KindHuman {
		return fmt.Errorf("%w: only humans may %s grants (%s is %s)", ErrNotAllowed, action, p.ID, p.Kind)
	}
	if len(s.opts.ApproverGroups) == 0 || !p.InGroup(s.opts.ApproverGroups...) {
		groups := strings.Join(s.opts.ApproverGroups, ", ")
		if groups == "" {
			groups = "(none configured)"
		}
		return fmt.Errorf("%w: only humans in breakglass.approver_groups (%s) may %s grants", ErrNotAllowed, groups, action)
	}
	return nil
}

// pending returns a copy of grant id to change, if it is pending at now.
// Caller holds mu.
func (s *Store) pending(id string, now time.Time, action string) (*Grant, error) {
	stored, ok := s.grants[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if st, _ := stored.at(now); st != StatePending {
		return nil, fmt.Errorf("%w: %s is %s; only a pending grant can be %s", ErrWrongState, id, st, action)
	}
	return stored.clone(), nil
}

// Get returns grant id as it is at the store's now.
func (s *Store) Get(id string) (Grant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[id]
	if !ok {
		return Grant{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return g.view(s.opts.Now()), nil
}

// List returns the grants in state (every grant for ""), oldest first, as
// they are at the store's now.
func (s *Store) List(state State) ([]Grant, error) {
	if _, err := ParseState(string(state)); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	out := []Grant{}
	for _, g := range s.grants {
		v := g.view(now)
		if state == "" || v.State == state {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b Grant) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Sweep records, as audit records, the expiry of every grant that ran out
// (or lapsed unapproved) by now, and persists it. Active already refuses such
// grants; Sweep makes the trail and the stored state say so.
func (s *Store) Sweep(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	var errs []error
	for _, stored := range s.grants {
		st, ended := stored.at(now)
		if st == stored.State {
			continue
		}
		g := stored.clone()
		detail := "at " + ended.UTC().Format(time.RFC3339)
		if g.State == StatePending {
			detail = fmt.Sprintf("not approved within %s (%d of %d approvals)", s.opts.MaxDuration, len(g.Approvals), g.ApprovalsRequired)
		}
		g.State, g.Ended = st, ended
		if err := s.commit(ctx, g, now, []event{{name: EventExpired, detail: detail}}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// event is one audited state change in a commit.
type event struct {
	name    string
	actor   *identity.Principal // nil: the proxy itself (expiry)
	detail  string
	comment string
}

// commit makes g's new state take effect: first the audit records (no
// record, no change), then the stored value, then the in-memory grant and
// index, then the notifications. Caller holds mu.
func (s *Store) commit(ctx context.Context, g *Grant, now time.Time, evs []event) error {
	seqs := make([]uint64, len(evs))
	for i, e := range evs {
		seq, err := s.audit(ctx, g, now, e)
		if err != nil {
			if i > 0 {
				// Part of the change is on record but will not take effect:
				// say so, so the trail does not mislead a reviewer.
				s.auditFailure(g, now, evs[i-1].name, err)
			}
			s.log.Error("break-glass state change not audited; refused", "grant", g.ID, "event", e.name, "err", err)
			return fmt.Errorf("%w: audit log unavailable: %w", ErrUnavailable, err)
		}
		seqs[i] = seq
	}
	b, err := json.Marshal(g)
	if err == nil {
		err = s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketGrants).Put([]byte(g.ID), b)
		})
	}
	if err != nil {
		s.log.Error("break-glass state change audited but not persisted; refused", "grant", g.ID, "err", err)
		s.auditFailure(g, now, evs[len(evs)-1].name, err)
		return fmt.Errorf("%w: cannot persist grant: %w", ErrUnavailable, err)
	}
	s.grants[g.ID] = g
	s.rebuild()
	if s.opts.Notifier != nil {
		for i, e := range evs {
			ev := Event{Event: e.name, Time: now.UTC(), Comment: e.comment, AuditSeq: seqs[i], Grant: g.view(now)}
			if e.actor != nil {
				ev.Actor = e.actor.ID
			}
			s.opts.Notifier.Notify(ev)
		}
	}
	return nil
}

func (s *Store) audit(ctx context.Context, g *Grant, now time.Time, e event) (uint64, error) {
	rec := &audit.Record{
		Time:            now.UTC(),
		Type:            audit.TypeBreakglass,
		BreakglassGrant: g.ID,
		Justification:   g.Reason,
		Ticket:          g.Ticket,
		Detail:          eventDetail(e),
	}
	if e.actor != nil {
		rec.Principal = &audit.Principal{ID: e.actor.ID, Kind: e.actor.Kind, Groups: e.actor.Groups, Authn: e.actor.Authn}
		if rec.Principal.Groups == nil {
			rec.Principal.Groups = []string{}
		}
	}
	// Detached from the caller: a client hanging up must not cut a record
	// that is on its way, but a stuck disk must not hold the change forever.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.AuditTimeout)
	defer cancel()
	return s.opts.Audit.Append(ctx, rec)
}

// eventDetail renders "<event>[: details][; comment: …]", the Detail of the
// audit record: the text before the first ':' always names the state change.
func eventDetail(e event) string {
	var parts []string
	if e.detail != "" {
		parts = append(parts, e.detail)
	}
	if e.comment != "" {
		parts = append(parts, "comment: "+e.comment)
	}
	if len(parts) == 0 {
		return e.name
	}
	return e.name + ": " + strings.Join(parts, "; ")
}

// auditFailure best-effort records that a change already partly on record did
// not take effect.
func (s *Store) auditFailure(g *Grant, now time.Time, after string, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.AuditTimeout)
	defer cancel()
	rec := &audit.Record{
		Time: now.UTC(), Type: audit.TypeBreakglass, BreakglassGrant: g.ID,
		Detail: fmt.Sprintf("failed: the %q change above did not take effect: %v", after, cause),
	}
	if _, err := s.opts.Audit.Append(ctx, rec); err != nil {
		s.log.Error("cannot record a failed break-glass change", "grant", g.ID, "err", err)
	}
}

// newID returns an unused id "bg-" + 10 hex digits. Caller holds mu.
func (s *Store) newID() (string, error) {
	var b [5]byte
	for range 8 {
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := "bg-" + hex.EncodeToString(b[:])
		if _, taken := s.grants[id]; !taken {
			return id, nil
		}
	}
	return "", errors.New("breakglass: cannot find a free grant id")
}
