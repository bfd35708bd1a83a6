package etcd_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/policy"
)

// FuzzPolicy feeds the etcd policy arbitrary requests for every kind of method, as the
// deployer, rendered as the proxy renders them (protojson of the method's input), with
// etcd's answers to the effect queries from fakeEtcd, and checks what must hold whatever a
// client sends: evaluation never fails (a failure would deny legitimate reads too),
// nothing outside the listed methods is ever allowed, and a DeleteRange is forbidden
// exactly when it would remove more than the per-call maximum, and otherwise costs the
// keys it removes.
func FuzzPolicy(f *testing.F) {
	methods := []string{
		"/etcdserverpb.KV/Range",
		"/etcdserverpb.KV/Put",
		"/etcdserverpb.KV/DeleteRange",
		"/etcdserverpb.KV/Txn",
		"/etcdserverpb.Watch/Watch",
		"/etcdserverpb.Lease/LeaseKeepAlive",
		"/etcdserverpb.Maintenance/Alarm",
		"/etcdserverpb.Cluster/MemberRemove",
		"/etcdserverpb.Auth/UserAdd",
	}
	allowed := methods[:7]
	for i, req := range []string{
		`{"key":"Zm9v"}`,
		`{"key":"Zm9v","value":"YmFy"}`,
		`{"key":"AQ==","rangeEnd":"/////w=="}`,
		`{"success":[{"requestTxn":{"failure":[{"requestDeleteRange":{"rangeEnd":"AA=="}}]}}]}`,
		`{"createRequest":{"key":"Zm9v"}}`,
		`{"ID":"7587862072907233292"}`,
		`{"action":"DEACTIVATE","alarm":"NOSPACE"}`,
		`{"ID":"42"}`,
		`{"name":"x","password":"y"}`,
	} {
		f.Add(uint8(i), []byte(req))
	}
	e, err := policy.Load(testCtx(f, time.Minute), policy.Options{Paths: []string{policyDir}})
	if err != nil {
		f.Fatalf("policy.Load: %v", err)
	}
	const deployer = `{"id":"spiffe://example.org/ns/prod/sa/deployer","kind":"automation","groups":["deployers"],"authn":"mtls"}`
	etcd := newFakeEtcd(f)

	f.Fuzz(func(t *testing.T, m uint8, req []byte) {
		method := methods[int(m)%len(methods)]
		// The proxy only ever hands the policy the protojson rendering of a message of the
		// method's input type.
		md, err := etcd.ps.FindMethod(context.Background(), method)
		if err != nil {
			t.Fatal(err)
		}
		msg := dynamicpb.NewMessage(md.Input())
		if protojson.Unmarshal(req, msg) != nil {
			return
		}
		obj, err := decode.ToMap(msg)
		if err != nil {
			return
		}
		if obj == nil {
			obj = map[string]any{}
		}
		canonical, err := json.Marshal(obj)
		if err != nil {
			return
		}
		ctx := testCtx(t, 10*time.Second)
		res, err := e.Eval(policy.WithQueries(ctx, policy.NewQueries(etcd, policy.QueryLimits{Max: 1 << 20})), proxyInput(t, deployer, method, string(canonical)))
		if err != nil {
			// etcd refuses an empty key, and so does the count query for it.
			if method == "/etcdserverpb.KV/Range" || !strings.Contains(err.Error(), "key is not provided") {
				t.Fatalf("Eval(%s %s) = %v, want no error", method, canonical, err)
			}
			return
		}
		v := policy.Decide(res, nil, policy.Enforce, "")
		if v.Decision == policy.DecisionAllow && !slices.Contains(allowed, method) {
			t.Errorf("Decide(%s %s) = %+v, want a denial: not a listed method", method, canonical, v)
		}
		if method != "/etcdserverpb.KV/DeleteRange" {
			return
		}
		key, end := msg.Get(md.Input().Fields().ByName("key")).Bytes(), msg.Get(md.Input().Fields().ByName("range_end")).Bytes()
		if len(key) == 0 {
			key = []byte{0}
		}
		n := 0
		for _, k := range etcd.keys {
			if inRange([]byte(k), key, end) {
				n++
			}
		}
		forbidden := slices.ContainsFunc(res.Forbid, func(r string) bool { return strings.HasPrefix(r, "the call would remove ") })
		if forbidden != (n > 50) {
			t.Errorf("Eval(%s %s).Forbid = %v for a delete of %d keys, want forbidden exactly above 50", method, canonical, res.Forbid, n)
		}
		want := []policy.Budget(nil)
		if n > 0 {
			want = []policy.Budget{{Key: "delete:etcd", Cost: float64(n)}}
		}
		var got []policy.Budget
		for _, b := range res.Budgets {
			if b.Key == "delete:etcd" {
				got = append(got, b)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Eval(%s %s) delete budget %v, want %v (%d keys)", method, canonical, got, want, n)
		}
	})
}
