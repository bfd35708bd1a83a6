package policy

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// FuzzEval feeds arbitrary JSON, as a decoded request would arrive from a client, through
// the example etcd policy. Whatever the input: no panic, an evaluation error never forwards
// in enforce mode, and a whole-keyspace DeleteRange is refused even under break-glass.
func FuzzEval(f *testing.F) {
	for _, s := range []string{
		`{"principal": {"kind": "human", "groups": ["sre"]}, "method": "/etcdserverpb.KV/DeleteRange", "request": {"key": "AA==", "rangeEnd": "AA=="}, "request_decoded": true}`,
		`{"principal": {"kind": "automation", "groups": ["deployers"]}, "method": "/etcdserverpb.KV/Put", "request": {"key": "Zm9v"}, "request_decoded": true}`,
		`{"principal": {"kind": "automation", "groups": "deployers"}, "method": "/etcdserverpb.KV/Put", "request": null, "request_decoded": false}`,
		`{"principal": {"kind": "human"}, "method": "/etcdserverpb.Cluster/MemberRemove", "upstream": 12, "request": {"ID": "1"}}`,
		`{"method": ["x"], "request": {"key": 1e400}}`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	e := loadEtcd(f)
	ctx := testCtx(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var in map[string]any
		if err := dec.Decode(&in); err != nil || in == nil {
			return
		}
		res, err := e.Eval(ctx, in)
		v := Decide(res, err, Enforce, "bg-fuzz")
		if err != nil && v.Forward() {
			t.Fatalf("Eval error %v, yet Decide forwards: %+v", err, v)
		}
		req, _ := in["request"].(map[string]any)
		if in["method"] == "/etcdserverpb.KV/DeleteRange" && req["key"] == "AA==" && req["rangeEnd"] == "AA==" && v.Forward() {
			t.Fatalf("keyspace wipe forwarded under break-glass: %+v for %s", v, b)
		}
		if err == nil && len(res.Forbid) > 0 && v.Forward() {
			t.Fatalf("forbid %v, yet Decide forwards: %+v", res.Forbid, v)
		}
	})
}

// FuzzDecodeData checks that whatever a data file holds, decodeData either refuses it or
// returns values OPA accepts.
func FuzzDecodeData(f *testing.F) {
	f.Add(true, []byte(`{"etcd": {"writer_groups": ["deployers"], "n": 1.5}}`))
	f.Add(false, []byte("etcd:\n  writer_groups: [deployers]\n  n: .nan\n"))
	f.Add(false, []byte("a: &x [1, *x]\n"))
	f.Add(false, []byte("? [1]\n: x\n"))
	f.Add(false, []byte("t: 2026-11-26T10:00:00Z\nb: !!binary aGVsbG8=\n"))
	f.Fuzz(func(t *testing.T, isJSON bool, b []byte) {
		name := "d.yaml"
		if isJSON {
			name = "d.json"
		}
		v, err := decodeData(name, b)
		if err != nil {
			return
		}
		if _, err := ast.InterfaceToValue(v); err != nil {
			t.Fatalf("decodeData(%s, %q) = %#v, which OPA rejects: %v", name, b, v, err)
		}
		if err := mergeData(map[string]any{}, []string{"x"}, v); err != nil {
			t.Fatalf("mergeData of a decoded document: %v", err)
		}
	})
}
