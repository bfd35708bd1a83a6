package etcd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/ztp-dev/ztp/decode"
)

// fakeEtcd answers the policy's effect queries (count-only Range, LeaseTimeToLive with
// keys) from a keyspace in memory, parsing each request with etcd's descriptors as the
// proxy encodes it, so a query etcd would refuse fails here too. The same keyspace as the
// Rego tests' stand-in: foo, foo/a, foo/b, bar, /e2e/txn and /bulk/001 … /bulk/120.
type fakeEtcd struct {
	ps     *decode.Protoset
	keys   []string
	leases map[int64][]string
}

func newFakeEtcd(t testing.TB) *fakeEtcd {
	t.Helper()
	ps, err := decode.LoadProtoset("etcd.protoset")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEtcd{ps: ps, keys: []string{"foo", "foo/a", "foo/b", "bar", "/e2e/txn"}, leases: map[int64][]string{7587862072907233292: {"foo/a", "foo/b"}}}
	for i := 1; i <= 120; i++ {
		f.keys = append(f.keys, fmt.Sprintf("/bulk/%03d", i))
	}
	return f
}

func (f *fakeEtcd) Allows(method string) error {
	if method != "/etcdserverpb.KV/Range" && method != "/etcdserverpb.Lease/LeaseTimeToLive" {
		return fmt.Errorf("%s is not an effect query of the example", method)
	}
	return nil
}

func (f *fakeEtcd) Query(ctx context.Context, method string, request []byte) ([]byte, error) {
	md, err := f.ps.FindMethod(ctx, method)
	if err != nil {
		return nil, err
	}
	msg := dynamicpb.NewMessage(md.Input())
	if err := protojson.Unmarshal(request, msg); err != nil {
		return nil, err
	}
	norm, err := protojson.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var req struct {
		Key, RangeEnd []byte
		CountOnly     bool
		ID            json.Number
		Keys          bool
	}
	if err := json.Unmarshal(norm, &req); err != nil {
		return nil, err
	}
	switch method {
	case "/etcdserverpb.KV/Range":
		if len(req.Key) == 0 {
			return nil, errors.New("rpc error: code = InvalidArgument desc = etcdserver: key is not provided")
		}
		if !req.CountOnly {
			return nil, errors.New("the example only counts")
		}
		n := 0
		for _, k := range f.keys {
			if inRange([]byte(k), req.Key, req.RangeEnd) {
				n++
			}
		}
		if n == 0 {
			return []byte(`{"header":{}}`), nil
		}
		return []byte(`{"header":{},"count":"` + strconv.Itoa(n) + `"}`), nil
	default: // LeaseTimeToLive
		id, _ := strconv.ParseInt(string(req.ID), 10, 64)
		keys, ok := f.leases[id]
		if !ok {
			return []byte(`{"header":{},"ID":"` + string(req.ID) + `","TTL":"-1"}`), nil
		}
		enc, _ := json.Marshal(toBytes(keys))
		return []byte(`{"header":{},"ID":"` + string(req.ID) + `","TTL":"50","grantedTTL":"60","keys":` + string(enc) + `}`), nil
	}
}

// inRange is etcd's range rule: no end, the key itself; end "\x00", every key from key on.
func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case bytes.Equal(end, []byte{0}):
		return bytes.Compare(k, key) >= 0
	}
	return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}
