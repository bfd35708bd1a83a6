package gobgp_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/policy"
)

// FuzzPolicy feeds the policy arbitrary protobuf bytes as the request of each method that
// carries routes, decoded by the proxy's decoder, from a human holding an active
// break-glass grant (the most a caller can have), and checks what must hold whatever a
// client sends: evaluation never fails, and no announced path that gobgpd would read as a
// default route (prefix length 0 modulo 256, gobgpd keeping 8 bits) or whose NLRI is
// binary is ever allowed. The check reads the decoded request in Go, not in Rego, so a
// blind spot in the policy's own reading shows up.
func FuzzPolicy(f *testing.F) {
	rpcs := []string{"AddPath", "DeletePath", "AddPathStream"}
	p := func(prefix string, length int, extra string) string {
		return `{"nlri":{"@type":"type.googleapis.com/apipb.IPAddressPrefix","prefix":"` + prefix + `","prefixLen":` + strings.TrimSpace(string(must(json.Marshal(length)))) + `},` +
			`"family":{"afi":"AFI_IP","safi":"SAFI_UNICAST"},"pattrs":[{"@type":"type.googleapis.com/apipb.NextHopAttribute","nextHop":"192.0.2.1"}]` + extra + `}`
	}
	ctx := testCtx(f, time.Minute)
	for _, seed := range []struct{ rpc, req string }{
		{"AddPath", `{"path":` + p("10.100.1.0", 24, "") + `}`},
		{"AddPath", `{"path":` + p("0.0.0.0", 0, "") + `}`},
		{"AddPath", `{"path":` + p("10.100.1.0", 24, `,"isWithdraw":true`) + `}`},
		{"AddPathStream", `{"paths":[` + p("10.100.1.0", 24, "") + `,` + p("10.0.0.0", 256, "") + `]}`},
		{"DeletePath", `{"path":` + p("10.100.1.0", 24, `,"nlriBinary":"AA=="`) + `}`},
		{"DeletePath", `{"family":{"afi":"AFI_IP6","safi":"SAFI_UNICAST"}}`},
	} {
		b, err := decode.EncodeJSON(ctx, protoset(f), "/apipb.GobgpApi/"+seed.rpc, []byte(seed.req))
		if err != nil {
			f.Fatalf("EncodeJSON(%s %s): %v", seed.rpc, seed.req, err)
		}
		f.Add(uint8(slices.Index(rpcs, seed.rpc)), b)
	}
	e, err := policy.Load(ctx, policy.Options{Paths: []string{policyDir}})
	if err != nil {
		f.Fatalf("policy.Load: %v", err)
	}
	const alice = `{"id":"spiffe://example.org/user/alice","kind":"human","groups":["sre"],"authn":"mtls"}`

	f.Fuzz(func(t *testing.T, m uint8, b []byte) {
		rpc := rpcs[int(m)%len(rpcs)]
		req, _, ok := decodeRequest(t, rpc, b)
		if !ok {
			req = nil
		}
		res, err := e.Eval(testCtx(t, 10*time.Second), recordInput(t, alice, rpc, req, "bg-fuzz"))
		if err != nil {
			t.Fatalf("Eval(%s %v) = %v, want no error", rpc, req, err)
		}
		v := policy.Decide(res, nil, policy.Enforce, "bg-fuzz")
		if v.Decision != policy.DecisionAllow {
			return
		}
		if req == nil {
			t.Fatalf("Decide(%s, undecodable) = %+v under break-glass, want forbidden", rpc, v)
		}
		// Through JSON with numbers kept exact, as the policy sees them.
		var doc map[string]any
		dec := json.NewDecoder(strings.NewReader(string(must(json.Marshal(req)))))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		var paths []any
		if pa, ok := doc["path"].(map[string]any); ok {
			paths = append(paths, pa)
		}
		if ps, ok := doc["paths"].([]any); ok {
			paths = append(paths, ps...)
		}
		for _, x := range paths {
			pa, _ := x.(map[string]any)
			if s, _ := pa["nlriBinary"].(string); s != "" {
				t.Errorf("Decide(%s %v) = allow under break-glass, want binary NLRI forbidden", rpc, doc)
			}
			if rpc == "DeletePath" || pa["isWithdraw"] == true {
				continue
			}
			nlri, _ := pa["nlri"].(map[string]any)
			if typ, _ := nlri["@type"].(string); !strings.HasSuffix(typ, "IPAddressPrefix") {
				continue
			}
			n, _ := nlri["prefixLen"].(json.Number)
			if l, err := n.Int64(); err == nil && (l%256 == 0 || l > 128) {
				t.Errorf("Decide(%s %v) = allow under break-glass, want prefix length %d forbidden", rpc, doc, l)
			}
		}
	})
}
