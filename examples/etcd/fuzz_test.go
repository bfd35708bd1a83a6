package etcd_test

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/policy"
)

// FuzzPolicy feeds the etcd policy arbitrary request objects for every kind of method,
// as the deployer, and checks what must hold whatever a client sends: evaluation never
// fails (a failure would deny legitimate reads too), nothing outside the listed methods
// is ever allowed, and a whole-keyspace DeleteRange is always forbidden.
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
		`{"key":"AA==","rangeEnd":"AA=="}`,
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

	f.Fuzz(func(t *testing.T, m uint8, req []byte) {
		// The proxy only ever hands the policy a JSON object (protojson of a message).
		dec := json.NewDecoder(bytes.NewReader(req))
		dec.UseNumber()
		var obj map[string]any
		if dec.Decode(&obj) != nil || obj == nil || dec.More() {
			return
		}
		canonical, err := json.Marshal(obj)
		if err != nil {
			return
		}
		method := methods[int(m)%len(methods)]
		res, err := e.Eval(testCtx(t, 10*time.Second), proxyInput(t, deployer, method, string(canonical)))
		if err != nil {
			t.Fatalf("Eval(%s %s) = %v, want no error", method, canonical, err)
		}
		v := policy.Decide(res, nil, policy.Enforce, "")
		if v.Decision == policy.DecisionAllow && !slices.Contains(allowed, method) {
			t.Errorf("Decide(%s %s) = %+v, want a denial: not a listed method", method, canonical, v)
		}
		key, hasKey := obj["key"]
		if method == "/etcdserverpb.KV/DeleteRange" && obj["rangeEnd"] == "AA==" && (!hasKey || key == "" || key == "AA==") &&
			!slices.Contains(res.Forbid, "deleting the whole keyspace is forbidden") {
			t.Errorf("Eval(%s %s).Forbid = %v, want the keyspace wipe forbidden", method, canonical, res.Forbid)
		}
	})
}
