package policy

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/ztp-dev/ztp/audit"
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

// FuzzReplayRecord feeds arbitrary audit lines (a --jsonl file is untrusted input) through
// RecordInput and a Replayer: no panic, every request record is either replayed or
// counted as skipped, and an input that was built always converts for OPA.
func FuzzReplayRecord(f *testing.F) {
	for _, s := range []string{
		`{"seq":1,"time":"2026-11-26T10:00:00Z","type":"request","principal":{"id":"spiffe://example.org/user/alice","kind":"human","groups":["sre"],"authn":"mtls"},"method":"/etcdserverpb.KV/Put","upstream":"etcd","message_index":0,"request":{"key":"Zm9v","value":"YmFy"},"request_decoded":true,"decision":"deny","reasons":["human writes need break-glass"],"policy_version":"sha256:x","prev_hash":"","hash":""}`,
		`{"seq":2,"time":"2026-11-26T10:00:00Z","type":"request","principal":{"id":"d","kind":"automation","groups":["deployers"]},"method":"/etcdserverpb.KV/DeleteRange","message_index":3,"request":{"key":"AA==","rangeEnd":"AA=="},"request_decoded":true,"decision":"allow","breakglass_grant":"bg-1","policy_version":"v","metadata":{"a":["b"]}}`,
		`{"seq":3,"type":"request","method":"x","request":[1,2,{"a":1e308}],"request_decoded":true,"decision":"error","policy_version":"v","principal":{}}`,
		`{"seq":4,"type":"request","method":"/ztp.v1.Audit/Export","decision":"allow"}`,
	} {
		f.Add([]byte(s))
	}
	e := loadEtcd(f)
	ctx := testCtx(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, err := audit.ParseLine(line)
		if err != nil {
			return
		}
		r := NewReplayer(e, ReplayOptions{})
		if err := r.Add(ctx, rec); err != nil {
			return
		}
		rep := r.Report()
		skipped := 0
		for _, n := range rep.Skipped {
			skipped += n
		}
		if rec.Type == audit.TypeRequest && rep.Replayed+skipped != 1 {
			t.Fatalf("request record neither replayed nor skipped: %+v for %s", rep, line)
		}
		if rep.Replayed == 1 {
			in, err := RecordInput(rec, false, false)
			if err != nil {
				t.Fatalf("Add replayed a record RecordInput refuses: %v", err)
			}
			if _, err := toValue(in); err != nil {
				t.Fatalf("RecordInput built an input OPA cannot take: %v for %s", err, line)
			}
		}
	})
}
