package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// Known answer for a record with effect queries, computed outside Go with the recipe in
// kat_test.go (LC_ALL=C, bash; cross-checked with Python):
//
//	h=$(printf '%s' '{"count":"2"}' | sha256sum)  → 7b63df0c…a288
//	c='<katQueriesCanonical>'                      (len 650)
//	{ printf 'ztp-audit-v1\0'; head -c 32 /dev/zero; printf '%016x' ${#c} | xxd -r -p; printf '%s' "$c"; } | sha256sum
//	→ f34b865235838571d1c9daf55e941e80f2659527efcfad6718be250ef62e9a4f
const (
	katAnswerSHA256     = "7b63df0c2464b7e9dab94c6add2fbc1ebb234b8c5c74f8a437d482222285a288"
	katQueriesHash      = "f34b865235838571d1c9daf55e941e80f2659527efcfad6718be250ef62e9a4f"
	katQueriesCanonical = `{"decision":"deny","message_index":0,"method":"/etcdserverpb.KV/DeleteRange",` +
		`"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",` +
		`"queries":[{"answer":{"count":"2"},"answer_sha256":"` + katAnswerSHA256 + `","method":"/etcdserverpb.KV/Range",` +
		`"request":{"countOnly":true,"key":"Zm9v","rangeEnd":"Zm9w"}},` +
		`{"error":"upstream etcd: timeout","method":"/etcdserverpb.Lease/LeaseTimeToLive","request":{"ID":"1","keys":true}}],` +
		`"reasons":["would remove 2 keys"],"request":{"key":"Zm9v","rangeEnd":"Zm9w"},"request_decoded":true,` +
		`"seq":1,"time":"2026-11-26T10:00:00.000000000Z","type":"request"}`
)

func katQueriesRecord(t *testing.T) *Record {
	t.Helper()
	counted, err := NewQuery("/etcdserverpb.KV/Range", []byte(`{"countOnly":true,"key":"Zm9v","rangeEnd":"Zm9w"}`), []byte(`{ "count": "2" }`), "", 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	return &Record{
		Time:           time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		Type:           TypeRequest,
		Method:         "/etcdserverpb.KV/DeleteRange",
		Request:        json.RawMessage(`{"rangeEnd":"Zm9w","key":"Zm9v"}`),
		RequestDecoded: true,
		Decision:       DecisionDeny,
		Reasons:        []string{"would remove 2 keys"},
		Queries: []Query{
			counted,
			{Method: "/etcdserverpb.Lease/LeaseTimeToLive", Request: json.RawMessage(`{"keys": true, "ID": "1"}`), Error: "upstream etcd: timeout"},
		},
	}
}

func TestKnownAnswerQueries(t *testing.T) {
	s, _ := openTestStore(t, Options{Now: fixedClock()})
	r := katQueriesRecord(t)
	mustAppend(t, s, r)
	if r.Hash != katQueriesHash {
		t.Errorf("hash = %s, want %s", r.Hash, katQueriesHash)
	}
	line := storeLines(t, s)[0]
	if got, want := string(line), withHash(katQueriesCanonical, katQueriesHash); got != want {
		t.Errorf("stored line\n got %s\nwant %s", got, want)
	}
	got, err := VerifyLine(line)
	if err != nil {
		t.Fatalf("VerifyLine: %v", err)
	}
	if len(got.Queries) != 2 || got.Queries[0].AnswerSHA256 != katAnswerSHA256 || got.Queries[1].Error == "" {
		t.Fatalf("parsed queries = %+v", got.Queries)
	}
	if a, ok := got.Queries[0].RecordedAnswer(); !ok || string(a) != `{"count":"2"}` {
		t.Errorf("RecordedAnswer = %s, %v; want the kept answer", a, ok)
	}
	if _, ok := got.Queries[1].RecordedAnswer(); ok {
		t.Error("a failed query has a recorded answer")
	}
}

func TestNewQueryKeepsSmallAnswers(t *testing.T) {
	q, err := NewQuery("/m", []byte(`{}`), []byte(`{"count":"2"}`), "", 5)
	if err != nil || q.Answer != nil || q.AnswerSHA256 != katAnswerSHA256 {
		t.Fatalf("NewQuery over the keep limit = %+v, %v; want the digest only", q, err)
	}
	if _, ok := q.RecordedAnswer(); ok {
		t.Error("an answer that was not kept is replayable")
	}
	if _, err := NewQuery("/m", []byte(`{}`), []byte(`{"count":`), "", 100); !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("NewQuery with a broken answer = %v, want ErrInvalidRecord", err)
	}
	// An edited answer no longer matches its digest: not replayable.
	q, _ = NewQuery("/m", []byte(`{}`), []byte(`{"count":"2"}`), "", 100)
	q.Answer = json.RawMessage(`{"count":"0"}`)
	if _, ok := q.RecordedAnswer(); ok {
		t.Error("an answer that does not match its digest is replayable")
	}
}

// Redaction applies to what queries ask and answer as it does to the request: a redacted
// answer is kept redacted, and so is no longer replayable.
func TestQueriesRedacted(t *testing.T) {
	s, _ := openTestStore(t, Options{Now: fixedClock(), Redact: []string{"password"}})
	q, err := NewQuery("/auth.Users/Get", []byte(`{"name":"bob","password":"hunter2"}`), []byte(`{"password":"s3cret","name":"bob"}`), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, &Record{Type: TypeRequest, Queries: []Query{q}})
	line := string(storeLines(t, s)[0])
	if strings.Contains(line, "hunter2") || strings.Contains(line, "s3cret") || strings.Count(line, `"password":"[redacted]"`) != 2 {
		t.Fatalf("stored line %s, want both passwords redacted", line)
	}
	r, err := VerifyLine([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Queries[0].RecordedAnswer(); ok {
		t.Error("a redacted answer is replayable")
	}
}

func TestQueriesInvalid(t *testing.T) {
	s, _ := openTestStore(t, Options{Now: fixedClock()})
	for _, tc := range []struct {
		q    Query
		want string
	}{
		{Query{Request: json.RawMessage(`{}`)}, "queries[0]: no method"},
		{Query{Method: "/m", Request: json.RawMessage(`[1]`)}, "queries[0].request: want a JSON object"},
		{Query{Method: "/m"}, "queries[0].request"},
		{Query{Method: "/m", Request: json.RawMessage(`{}`), Answer: json.RawMessage(`"x"`)}, "queries[0].answer: want a JSON object"},
		{Query{Method: "/m", Request: json.RawMessage(`{}`), AnswerSHA256: "xyz"}, "queries[0].answer_sha256"},
	} {
		_, err := s.Append(testCtx(t), &Record{Type: TypeRequest, Queries: []Query{tc.q}})
		if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Append(%+v) = %v, want ErrInvalidRecord naming %q", tc.q, err, tc.want)
		}
	}
}

// FuzzQueries: whatever a query's fields hold, the record is refused or its line is
// canonical, verifies, and gives back the query with the answer it kept, which is
// replayable exactly when it was kept unchanged.
func FuzzQueries(f *testing.F) {
	f.Add("/etcdserverpb.KV/Range", `{"key":"Zm9v","countOnly":true}`, `{"count":"2","hash":"x"}`, "", 100, "")
	f.Add("/m", `{}`, `{"password":"x"}`, "boom", 3, "password")
	f.Add("\u2028\xff", `{"a":[1,{"b":null}]}`, ``, "\"hash\":\"", 0, "*.b")
	f.Fuzz(func(t *testing.T, method, request, answer, errText string, keep int, redact string) {
		var ans []byte
		if answer != "" {
			ans = []byte(answer)
		}
		q, err := NewQuery(method, []byte(request), ans, errText, keep)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("NewQuery = %v, want ErrInvalidRecord", err)
			}
			return
		}
		var paths []redactPath
		if redact != "" {
			if paths, err = parseRedactPaths([]string{redact}); err != nil {
				return
			}
		}
		e, err := newEntry(&Record{Type: TypeRequest, Queries: []Query{q}}, paths, 0)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("newEntry = %v, want ErrInvalidRecord", err)
			}
			return
		}
		line, _, err := e.seal(1, [32]byte{}, func() time.Time { return time.Unix(1, 0) })
		if err != nil {
			t.Fatal(err)
		}
		r, err := VerifyLine(line)
		if err != nil {
			t.Fatalf("VerifyLine(%s) = %v", line, err)
		}
		if len(r.Queries) != 1 || r.Queries[0].Method != readBack(method) || r.Queries[0].AnswerSHA256 != q.AnswerSHA256 {
			t.Fatalf("parsed %+v from %s, want %+v", r.Queries, line, q)
		}
		got, ok := r.Queries[0].RecordedAnswer()
		if ok && !bytes.Equal(got, q.Answer) {
			t.Fatalf("RecordedAnswer = %s, replayable, but the answer kept was %s", got, q.Answer)
		}
		if !ok && q.Answer != nil && len(paths) == 0 {
			t.Fatalf("the kept answer %s is not replayable from %s", q.Answer, line)
		}
	})
}

// readBack is s as it reads back from a record (invalid UTF-8 replaced).
func readBack(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}
