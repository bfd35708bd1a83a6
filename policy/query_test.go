package policy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// queryPolicy charges a delete by the number of keys a count-only Range says it removes,
// forbids more than 2, and asks the same question twice (the cache answers the second).
const queryPolicy = `package ztp

default allow := true

n := to_number(object.get(ztp.query("/etcdserverpb.KV/Range", {"key": input.request.key, "countOnly": true}), "count", "0"))

again := ztp.query("/etcdserverpb.KV/Range", {"countOnly": true, "key": input.request.key})

forbid contains sprintf("would remove %d keys", [n]) if {
	again
	n > 2
}
`

// fakeQuerier answers Range with a count per key and records what it was asked.
type fakeQuerier struct {
	mu     sync.Mutex
	counts map[string]int // key (base64) → count
	asked  []string
	block  bool  // wait for the context to end
	err    error // fail every query
}

func (f *fakeQuerier) Allows(method string) error {
	if method != "/etcdserverpb.KV/Range" {
		return errors.New("method " + method + " is not allowed")
	}
	return nil
}

func (f *fakeQuerier) Query(ctx context.Context, method string, request []byte) ([]byte, error) {
	f.mu.Lock()
	f.asked = append(f.asked, method+" "+string(request))
	f.mu.Unlock()
	if f.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	var req struct{ Key string }
	if err := json.Unmarshal(request, &req); err != nil {
		return nil, err
	}
	return []byte(`{"header":{"revision":"7"},"count":"` + itoa(f.counts[req.Key]) + `"}`), nil
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func evalQueries(t *testing.T, e *Engine, q Querier, limits QueryLimits, key string) (Result, []Query, error) {
	t.Helper()
	qs := NewQueries(q, limits)
	in := etcdInput(t, "spiffe://example.org/ns/prod/sa/deployer", "automation", []string{"deployers"}, "/etcdserverpb.KV/DeleteRange", map[string]any{"key": key})
	res, err := e.Eval(WithQueries(testCtx(t), qs), in)
	return res, qs.Made(), err
}

func TestQueryAnswersAndCaches(t *testing.T) {
	e := loadPolicy(t, queryPolicy, nil)
	f := &fakeQuerier{counts: map[string]int{"Zm9v": 5, "YmFy": 1}}
	res, made, err := evalQueries(t, e, f, QueryLimits{Max: 1, Timeout: time.Minute}, "Zm9v")
	if err != nil {
		t.Fatalf("Eval: %v", err)
	}
	if len(res.Forbid) != 1 || res.Forbid[0] != "would remove 5 keys" {
		t.Errorf("forbid = %q, want [would remove 5 keys]", res.Forbid)
	}
	// Max 1 and still no error: the second, identical query (keys in another order) came
	// from the cache.
	if len(f.asked) != 1 || f.asked[0] != `/etcdserverpb.KV/Range {"countOnly":true,"key":"Zm9v"}` {
		t.Errorf("upstream asked %q, want one canonical Range", f.asked)
	}
	if len(made) != 1 || made[0].Method != "/etcdserverpb.KV/Range" || string(made[0].Answer) != `{"count":"5","header":{"revision":"7"}}` || made[0].Err != nil {
		t.Errorf("Made() = %+v", made)
	}

	res, _, err = evalQueries(t, e, f, QueryLimits{Max: 1}, "YmFy")
	if err != nil || len(res.Forbid) != 0 {
		t.Errorf("one key: forbid %q, err %v; want none", res.Forbid, err)
	}
}

// Every way a query can fail is an evaluation error (which Decide turns into a denial),
// never an undefined rule that would let the message through.
func TestQueryFailuresDeny(t *testing.T) {
	e := loadPolicy(t, queryPolicy, nil)
	two := loadPolicy(t, `package ztp

default allow := true

a := ztp.query("/etcdserverpb.KV/Range", {"key": "YQ=="})
b := ztp.query("/etcdserverpb.KV/Range", {"key": "Yg=="})
forbid contains "never" if { a; b; false }
`, nil)
	for _, tc := range []struct {
		name   string
		e      *Engine
		q      Querier
		limits QueryLimits
		want   string
	}{
		{"no querier", e, nil, QueryLimits{Max: 5}, "no upstream to ask here"},
		{"limit zero", e, &fakeQuerier{}, QueryLimits{}, "more than 0 effect queries in one decision"},
		{"over the limit", two, &fakeQuerier{}, QueryLimits{Max: 1}, "more than 1 effect queries in one decision"},
		{"upstream error", e, &fakeQuerier{err: errors.New("rpc error: code = Unavailable")}, QueryLimits{Max: 5}, "code = Unavailable"},
		{"refused method", loadPolicy(t, "package ztp\n\nallow if ztp.query(\"/etcdserverpb.KV/Put\", {})\n", nil), &fakeQuerier{}, QueryLimits{Max: 5}, "method /etcdserverpb.KV/Put is not allowed"},
		{"timeout", e, &fakeQuerier{block: true}, QueryLimits{Max: 5, Timeout: time.Millisecond}, "took longer than 1ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qs := NewQueries(tc.q, tc.limits)
			if tc.q == nil {
				qs = nil
			}
			in := etcdInput(t, "x", "automation", nil, "/etcdserverpb.KV/DeleteRange", map[string]any{"key": "Zm9v"})
			ctx := testCtx(t)
			if qs != nil {
				ctx = WithQueries(ctx, qs)
			}
			res, err := tc.e.Eval(ctx, in)
			if err == nil || !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ztp.query") {
				t.Fatalf("Eval = %+v, %v; want an evaluation error with %q", res, err, tc.want)
			}
			if v := Decide(res, err, Enforce, "grant-1"); v.Decision != DecisionError || v.Forward() {
				t.Errorf("Decide = %+v, want error, not forwarded, even under break-glass", v)
			}
		})
	}
}

func TestQueryWrongArguments(t *testing.T) {
	for _, call := range []string{`ztp.query(1, {})`, `ztp.query("/m", [1])`} {
		_, err := Load(testCtx(t), Options{Paths: []string{writeTree(t, map[string]string{"p.rego": "package ztp\n\nallow if " + call + "\n"})}})
		if err == nil || !strings.Contains(err.Error(), "rego_type_error") {
			t.Errorf("Load with %s = %v, want a type error at compile time", call, err)
		}
	}
}

// A policy test mocks ztp.query with OPA's with keyword; unmocked, the query is a test
// error that says how to mock it. Where a test imports data.ztp, "ztp" names the policy
// package: "with ztp.query" then mocks the policy's own rule query (a wrapper around the
// built-in, as examples/etcd has), and a test that imports the package under another
// name mocks the built-in itself.
func TestQueryMockedInPolicyTests(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"p.rego": queryPolicy,
		"w.rego": `package ztp

query(method, request) := ztp.query(method, request)

wrapped := to_number(query("/etcdserverpb.KV/Range", {"key": input.request.key, "countOnly": true}).count)
`,
		"builtin_test.rego": `package builtin_test

import data.ztp as policy

count_answer(_, req) := {"count": "9"} if req.key == "Zm9v"
count_answer(_, req) := {"count": "1"} if req.key != "Zm9v"

test_mocked_function if {
	policy.forbid == {"would remove 9 keys"} with input as {"request": {"key": "Zm9v"}} with ztp.query as count_answer
	count(policy.forbid) == 0 with input as {"request": {"key": "YmFy"}} with ztp.query as count_answer
}

test_mocked_value if {
	policy.forbid == {"would remove 3 keys"} with input as {"request": {"key": "Zm9v"}} with ztp.query as {"count": "3"}
}

test_unmocked if {
	count(policy.forbid) == 0 with input as {"request": {"key": "Zm9v"}}
}
`,
		"wrapper_test.rego": `package wrapper_test

import data.ztp

test_wrapper_mocked if {
	ztp.wrapped == 4 with input as {"request": {"key": "Zm9v"}} with ztp.query as {"count": "4"}
}
`,
	})
	rep, err := RunTests(testCtx(t), TestOptions{Paths: []string{dir}})
	if err != nil {
		t.Fatalf("RunTests: %v", err)
	}
	got := map[string]TestResult{}
	for _, r := range rep.Results {
		got[r.Name] = r
	}
	for name, want := range map[string]string{"test_mocked_function": TestPass, "test_mocked_value": TestPass, "test_unmocked": TestError, "test_wrapper_mocked": TestPass} {
		if got[name].Outcome != want {
			t.Errorf("%s: %s (%s), want %s", name, got[name].Outcome, got[name].Detail, want)
		}
	}
	if d := got["test_unmocked"].Detail; !strings.Contains(d, "with ztp.query as") {
		t.Errorf("test_unmocked detail %q, want it to say how to mock ztp.query", d)
	}
}
