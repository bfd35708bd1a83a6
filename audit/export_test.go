package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// exportLog appends a small, varied log and returns the store. Record i
// (seq i+1) is at 10:00 + i minutes.
func exportLog(t *testing.T) *Store {
	t.Helper()
	s, _ := openTestStore(t, Options{})
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	alice := &Principal{ID: "spiffe://example.org/user/alice", Kind: "human", Groups: []string{"sre"}, Authn: "mtls"}
	bot := &Principal{ID: "spiffe://example.org/ns/prod/sa/deployer", Kind: "automation", Groups: []string{"deployers"}, Authn: "mtls"}
	recs := []*Record{
		{Type: TypeSystem, Detail: "started"},                                                                                           // 1
		{Type: TypeRequest, Principal: bot, Method: "/etcdserverpb.KV/Put", Decision: DecisionAllow},                                    // 2
		{Type: TypeOutcome, Principal: bot, Method: "/etcdserverpb.KV/Put", Ref: 2, Code: "OK"},                                         // 3
		{Type: TypeRequest, Principal: alice, Method: "/etcdserverpb.KV/DeleteRange", Decision: DecisionDeny},                           // 4
		{Type: TypeBreakglass, Principal: alice, BreakglassGrant: "bg-1", Detail: "requested"},                                          // 5
		{Type: TypeRequest, Principal: alice, Method: "/etcdserverpb.KV/DeleteRange", Decision: DecisionAllow, BreakglassGrant: "bg-1"}, // 6
		{Type: TypeRequest, Principal: alice, Method: "/etcdserverpb.Cluster/MemberList", Decision: DecisionAllow},                      // 7
		// A request whose payload mentions another principal's id and a
		// decision: the byte pre-filter must not be fooled into a match.
		{Type: TypeRequest, Principal: bot, Method: "/etcdserverpb.KV/Put", Decision: DecisionDeny,
			Request: json.RawMessage(`{"id":"spiffe://example.org/user/alice","decision":"allow","breakglass_grant":"bg-1"}`), RequestDecoded: true}, // 8
	}
	for i, r := range recs {
		r.Time = t0.Add(time.Duration(i) * time.Minute)
		mustAppend(t, s, r)
	}
	return s
}

func TestExportFilters(t *testing.T) {
	s := exportLog(t)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"everything", Filter{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"from seq", Filter{FromSeq: 6}, []uint64{6, 7, 8}},
		{"since (inclusive)", Filter{Since: t0.Add(5 * time.Minute)}, []uint64{6, 7, 8}},
		{"until (exclusive)", Filter{Until: t0.Add(2 * time.Minute)}, []uint64{1, 2}},
		{"since and until", Filter{Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)}, []uint64{2, 3}},
		{"since in another zone", Filter{Since: t0.Add(5 * time.Minute).In(time.FixedZone("CET", 3600))}, []uint64{6, 7, 8}},
		{"principal", Filter{Principal: "spiffe://example.org/user/alice"}, []uint64{4, 5, 6, 7}},
		{"principal prefix is not a match", Filter{Principal: "spiffe://example.org/user/ali"}, nil},
		{"method glob", Filter{Method: "/etcdserverpb.KV/*"}, []uint64{2, 3, 4, 6, 8}},
		{"method glob without leading slash", Filter{Method: "*/DeleteRange"}, []uint64{4, 6}},
		{"exact method", Filter{Method: "/etcdserverpb.Cluster/MemberList"}, []uint64{7}},
		{"decision", Filter{Decision: DecisionDeny}, []uint64{4, 8}},
		{"grant", Filter{Grant: "bg-1"}, []uint64{5, 6}},
		{"combined", Filter{Principal: "spiffe://example.org/user/alice", Decision: DecisionAllow, Method: "/etcdserverpb.KV/*"}, []uint64{6}},
		{"nothing matches", Filter{Decision: DecisionError}, nil},
		{"far past and future", Filter{Since: time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			err := s.Export(testCtx(t), tc.f, func(seq uint64, line []byte) error {
				r, err := VerifyLine(line)
				if err != nil || r.Seq != seq {
					return fmt.Errorf("exported line of seq %d does not verify: %v", seq, err)
				}
				got = append(got, seq)
				return nil
			})
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("Export(%+v) = %v, %v; want %v", tc.f, got, err, tc.want)
			}
		})
	}
}

func TestExportIsStoredBytes(t *testing.T) {
	s := exportLog(t)
	want := storeLines(t, s)
	var got [][]byte
	if err := s.Export(testCtx(t), Filter{}, func(_ uint64, l []byte) error { got = append(got, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("Export lines differ from the stored lines")
	}
	v := NewChainVerifier()
	for _, l := range got {
		if err := v.Add(l); err != nil {
			t.Fatalf("export does not verify: %v", err)
		}
	}
	// The offline reader exports the same.
	path := s.path
	s.Close()
	r, err := OpenReader(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var offline [][]byte
	if err := r.Export(testCtx(t), Filter{}, func(_ uint64, l []byte) error { offline = append(offline, l); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(offline, want, bytes.Equal) {
		t.Errorf("Reader.Export lines differ from the stored lines")
	}
}

func TestExportInvalidFilter(t *testing.T) {
	s := exportLog(t)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		f    Filter
	}{
		{"bad glob", Filter{Method: "/a/[b"}},
		{"until before since", Filter{Since: t0, Until: t0.Add(-time.Second)}},
		{"until equals since", Filter{Since: t0, Until: t0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Export(testCtx(t), tc.f, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrInvalidFilter) {
				t.Errorf("Export(%+v) = %v, want ErrInvalidFilter", tc.f, err)
			}
		})
	}
	if err := s.Follow(testCtx(t), Filter{Until: t0}, func(uint64, []byte) error { return nil }, nil); !errors.Is(err, ErrInvalidFilter) {
		t.Errorf("Follow with Until = %v, want ErrInvalidFilter", err)
	}
}

func TestAppendedNotifies(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	ch := s.Appended()
	select {
	case <-ch:
		t.Fatal("Appended channel closed before any commit")
	default:
	}
	mustAppend(t, s, requestRecord(0))
	<-ch // closed by the commit (a hang here fails on the test timeout)
	next := s.Appended()
	if next == ch {
		t.Fatal("Appended returned the closed channel again")
	}
	s.Close()
	<-next // Close wakes followers
	<-s.Appended()
}

type followed struct {
	seq  uint64
	line []byte
}

// TestFollow exports the existing matching records, then new ones as they
// are committed, and ends with the context or the store.
func TestFollow(t *testing.T) {
	s := exportLog(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	got := make(chan followed, 100)
	caughtUp := make(chan struct{}, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Follow(ctx, Filter{Principal: "spiffe://example.org/user/alice", FromSeq: 5},
			func(seq uint64, line []byte) error { got <- followed{seq, line}; return nil },
			func() error { caughtUp <- struct{}{}; return nil })
	}()
	want := func(seqs ...uint64) {
		t.Helper()
		for _, w := range seqs {
			if f := <-got; f.seq != w {
				t.Fatalf("followed seq %d, want %d", f.seq, w)
			}
		}
		<-caughtUp
	}
	want(5, 6, 7)
	mustAppend(t, s, requestRecord(0)) // the deployer: filtered out
	<-caughtUp
	r := requestRecord(1)
	r.Principal = &Principal{ID: "spiffe://example.org/user/alice", Kind: "human", Groups: []string{}, Authn: "mtls"}
	mustAppend(t, s, r)
	want(10)
	select {
	case f := <-got:
		t.Fatalf("unexpected record %d", f.seq)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow after cancel = %v, want context.Canceled", err)
	}

	go func() {
		done <- s.Follow(testCtx(t), Filter{}, func(uint64, []byte) error { return nil }, func() error { caughtUp <- struct{}{}; return nil })
	}()
	<-caughtUp
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Follow after Close = %v, want ErrClosed", err)
	}
}

func TestCSVRow(t *testing.T) {
	s := exportLog(t)
	req := requestRecord(2)
	req.Metadata = map[string][]string{"x-request-id": {"r1"}}
	req.Justification, req.Ticket, req.Reasons = "fix, \"now\"", "INC-1", []string{"a", "b"}
	req.RequestBytes, req.RequestSHA256 = 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	mustAppend(t, s, req)
	mustAppend(t, s, &Record{Type: TypeOutcome, Ref: 9, Code: "OK", DurationMS: 1.25, MessagesIn: 1, MessagesOut: 2})
	header := CSVHeader()
	col := func(row []string, name string) string { return row[slices.Index(header, name)] }
	var rows [][]string
	if err := s.Scan(testCtx(t), 9, func(r *Record) error { rows = append(rows, CSVRow(r)); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		row        int
		col, value string
	}{
		{0, "seq", "9"},
		{0, "type", "request"},
		{0, "principal", "spiffe://example.org/ns/prod/sa/deployer"},
		{0, "groups", "deployers"},
		{0, "message_index", "2"},
		{0, "request_decoded", "true"},
		{0, "request", `{"key":"Zm9v","value":"YmFy"}`},
		{0, "justification", `fix, "now"`},
		{0, "reasons", "a; b"},
		{0, "metadata", `{"x-request-id":["r1"]}`},
		{0, "duration_ms", ""},
		{1, "type", "outcome"},
		{1, "ref", "9"},
		{1, "duration_ms", "1.25"},
		{1, "messages_out", "2"},
		{1, "message_index", ""},
		{1, "principal", ""},
		{0, "request_bytes", "0"},
		{0, "request_sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{0, "request_truncated", ""},
		{1, "request_bytes", ""},
	} {
		if len(rows[tc.row]) != len(header) {
			t.Fatalf("row %d has %d columns, header %d", tc.row, len(rows[tc.row]), len(header))
		}
		if got := col(rows[tc.row], tc.col); got != tc.value {
			t.Errorf("row %d column %s = %q, want %q", tc.row, tc.col, got, tc.value)
		}
	}
	if got := col(rows[0], "hash"); len(got) != 64 {
		t.Errorf("hash column = %q, want 64 hex digits", got)
	}
}

// TestViewOf: the fast field extraction agrees with encoding/json on
// stored lines (including escaped text) and falls back on damaged ones.
func TestViewOf(t *testing.T) {
	s := exportLog(t)
	mustAppend(t, s, &Record{Type: TypeRequest, Method: "/a.B/\"C\"\u2028\n", Decision: DecisionAllow,
		Principal: &Principal{ID: "spiffe://x/\\y\u0001", Kind: "human", Groups: []string{}, Authn: "mtls"}, BreakglassGrant: "bg-\t"})
	lines := storeLines(t, s)
	damaged := bytes.Replace(lines[len(lines)-1], []byte(`,"method"`), []byte(` , "method"`), 1)
	for i, l := range append(lines, damaged) {
		var scratch []rawMember
		got, err := viewOf(l, &scratch)
		var want filterView
		werr := json.Unmarshal(l, &want)
		if err != nil || werr != nil || got != want {
			t.Errorf("line %d: viewOf = %+v, %v; encoding/json = %+v, %v", i, got, err, want, werr)
		}
	}
}
