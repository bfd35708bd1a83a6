package proxy_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ztp-dev/ztp/policy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// unknownFieldsPolicy denies a message carrying fields the descriptors do not know.
const unknownFieldsPolicy = `package ztp

default allow := true

deny contains "unknown fields" if count(input.request_unknown_fields) > 0
`

// TestUnknownFieldsRecordedForReplay: the request record keeps where the message had
// unknown fields, so that replaying it under the policy that denied it denies it again
// (it used to read as deny→allow: the record lacked them).
func TestUnknownFieldsRecordedForReplay(t *testing.T) {
	e, _ := startWire(t, proxytest.Options{Policy: unknownFieldsPolicy})
	conn := e.Conn(t, proxytest.DeployerID)
	in := slices.Concat(varintF(11, 1), varintF(99, 7), lenF(3, varintF(77, 1))) // n, unknown 99, single.77
	err := conn.Invoke(proxytest.Ctx(t), wireMethod, raw(in), &emptypb.Empty{})
	proxytest.WantCode(t, "a message with unknown fields", err, codes.PermissionDenied, "unknown fields")

	recs := e.Requests(t, wireMethod)
	if len(recs) != 1 {
		t.Fatalf("%d request records, want 1", len(recs))
	}
	if got, want := recs[0].RequestUnknownFields, []string{"99", "single.77"}; !slices.Equal(got, want) {
		t.Fatalf("request_unknown_fields = %q, want %q", got, want)
	}
	eng, err := policy.Load(proxytest.Ctx(t), policy.Options{Paths: []string{e.Dir + "/policies"}})
	if err != nil {
		t.Fatal(err)
	}
	r := policy.NewReplayer(eng, policy.ReplayOptions{})
	if err := r.Add(proxytest.Ctx(t), recs[0]); err != nil {
		t.Fatal(err)
	}
	if rep := r.Report(); rep.Replayed != 1 || rep.Unchanged != 1 {
		t.Errorf("replay of the denied record: %+v, want it replayed and unchanged", rep)
	}
}
