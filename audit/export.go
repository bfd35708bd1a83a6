package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Filter selects records for export. Zero fields select everything. Each
// record is judged on its own fields: an outcome record carries the
// principal and method of its call but no decision or grant, so
// filtering by decision or grant leaves outcomes out.
type Filter struct {
	Since time.Time // time >= Since
	Until time.Time // time < Until
	// Principal is a principal id, matched exactly.
	Principal string
	// Method is a path.Match glob on the full method name
	// ("/etcdserverpb.KV/*"). A glob without the leading "/" is matched
	// against the name without it, so "*/DeleteRange" works as expected.
	Method   string
	Decision string // allow | deny | dryrun_deny | ratelimited | error
	Grant    string // break-glass grant id (decision and breakglass records)
	FromSeq  uint64 // first seq to consider
}

// matcher is a compiled Filter.
type matcher struct {
	f            Filter
	since, until string   // in timeLayout, which sorts as text; "" when unset
	needles      [][]byte // encoded members a matching line must contain
	any          bool     // the filter selects by content at all
	scratch      []rawMember
}

func (f Filter) compile() (*matcher, error) {
	if f.Method != "" {
		if _, err := path.Match(f.Method, ""); err != nil {
			return nil, fmt.Errorf("%w: method glob %q: %w", ErrInvalidFilter, f.Method, err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return nil, fmt.Errorf("%w: until %s is not after since %s", ErrInvalidFilter, f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	m := &matcher{f: f}
	if !f.Since.IsZero() {
		m.since = clampTime(f.Since)
	}
	if !f.Until.IsZero() {
		m.until = clampTime(f.Until)
	}
	// A cheap byte search rejects most non-matching lines before any JSON
	// is parsed: the canonical encoding spells each member one way.
	for _, kv := range []struct{ key, val string }{{"id", f.Principal}, {"decision", f.Decision}, {"breakglass_grant", f.Grant}} {
		if kv.val != "" {
			m.needles = append(m.needles, appendString(append(appendString(nil, kv.key), ':'), kv.val))
		}
	}
	m.any = m.since != "" || m.until != "" || f.Method != "" || len(m.needles) > 0
	return m, nil
}

// clampTime renders t in the record time layout, clamped to the years the
// layout can spell so that comparisons as text stay correct.
func clampTime(t time.Time) string {
	t = t.UTC()
	switch {
	case t.Year() < 0:
		t = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	case t.Year() > 9999:
		t = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	}
	return t.Format(timeLayout)
}

// filterView is the part of a record a Filter looks at.
type filterView struct {
	Time      string `json:"time"`
	Principal struct {
		ID string `json:"id"`
	} `json:"principal"`
	Method   string `json:"method"`
	Decision string `json:"decision"`
	Grant    string `json:"breakglass_grant"`
}

// viewOf extracts the filtered fields. A stored line is canonical, so the
// allocation-free canonical scanner finds them; a line that is not (a
// damaged log) is decoded the slow way, so that export still works.
func viewOf(line []byte, scratch *[]rawMember) (filterView, error) {
	var v filterView
	top, err := checkCanonical(line, *scratch)
	*scratch = top
	if err != nil || len(line) == 0 || line[0] != '{' {
		err := json.Unmarshal(line, &v)
		return v, err
	}
	for _, m := range top {
		switch string(m.key) {
		case "time":
			v.Time = canonicalString(m.val)
		case "method":
			v.Method = canonicalString(m.val)
		case "decision":
			v.Decision = canonicalString(m.val)
		case "breakglass_grant":
			v.Grant = canonicalString(m.val)
		case "principal":
			if m.val[0] == '{' {
				var buf [4]rawMember
				members, _ := checkCanonical(m.val, buf[:0]) // canonical as part of the line
				for _, pm := range members {
					if string(pm.key) == "id" {
						v.Principal.ID = canonicalString(pm.val)
					}
				}
			}
		}
	}
	return v, nil
}

// canonicalString returns the content of a canonical JSON string value
// (quotes included in raw); "" for any other value.
func canonicalString(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	return string(unescapeCanonical(raw[1 : len(raw)-1]))
}

func (m *matcher) match(seq uint64, line []byte) (bool, error) {
	if !m.any {
		return true, nil
	}
	for _, n := range m.needles {
		if !bytes.Contains(line, n) {
			return false, nil
		}
	}
	v, err := viewOf(line, &m.scratch)
	if err != nil {
		return false, fmt.Errorf("%w: seq %d: %w", ErrCorrupt, seq, err)
	}
	f := m.f
	switch {
	case m.since != "" && v.Time < m.since,
		m.until != "" && v.Time >= m.until,
		f.Principal != "" && v.Principal.ID != f.Principal,
		f.Decision != "" && v.Decision != f.Decision,
		f.Grant != "" && v.Grant != f.Grant:
		return false, nil
	case f.Method != "":
		name := v.Method
		if !strings.HasPrefix(f.Method, "/") {
			name = strings.TrimPrefix(name, "/")
		}
		ok, _ := path.Match(f.Method, name)
		return ok, nil
	}
	return true, nil
}

// Export calls fn with the stored line (the exact bytes that were hashed,
// plus the hash member; a copy fn may keep) of each record matching f, in
// seq order, reading in bounded chunks while appends continue. It does not
// verify (Verify does). An error from fn stops the export and is returned
// as is.
func (s *Store) Export(ctx context.Context, f Filter, fn func(seq uint64, line []byte) error) error {
	if err := s.readable(); err != nil {
		return err
	}
	return exportDB(ctx, s.db, f, fn)
}

// Export is Store.Export on a file no proxy holds.
func (r *Reader) Export(ctx context.Context, f Filter, fn func(seq uint64, line []byte) error) error {
	return exportDB(ctx, r.db, f, fn)
}

func exportDB(ctx context.Context, db *bolt.DB, f Filter, fn func(uint64, []byte) error) error {
	m, err := f.compile()
	if err != nil {
		return err
	}
	return scanMatching(ctx, db, m, f.FromSeq, fn, nil)
}

func scanMatching(ctx context.Context, db *bolt.DB, m *matcher, from uint64, fn func(uint64, []byte) error, next *uint64) error {
	return scanLines(ctx, db, from, func(seq uint64, line []byte) error {
		if next != nil {
			*next = seq + 1
		}
		ok, err := m.match(seq, line)
		if err != nil || !ok {
			return err
		}
		return fn(seq, line)
	})
}

// Follow exports like Export and then keeps going: each time records are
// committed it exports the new ones that match, until ctx ends (returning
// ctx's error) or the store closes (ErrClosed). caughtUp, when not nil, is
// called each time the end of the log is reached, before waiting: a
// streaming caller flushes what it buffered there. Memory stays bounded:
// nothing is held between reads but the next seq. Until cannot be set: a
// follower waits for records that have not happened yet.
func (s *Store) Follow(ctx context.Context, f Filter, fn func(seq uint64, line []byte) error, caughtUp func() error) error {
	if !f.Until.IsZero() {
		return fmt.Errorf("%w: until cannot be combined with follow", ErrInvalidFilter)
	}
	m, err := f.compile()
	if err != nil {
		return err
	}
	next := max(f.FromSeq, 1)
	for {
		// Take the notification channel before reading, so a commit that
		// lands after the read still wakes us.
		appended := s.Appended()
		if err := s.readable(); err != nil {
			return err
		}
		if err := scanMatching(ctx, s.db, m, next, fn, &next); err != nil {
			return err
		}
		if caughtUp != nil {
			if err := caughtUp(); err != nil {
				return err
			}
		}
		select {
		case <-appended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
