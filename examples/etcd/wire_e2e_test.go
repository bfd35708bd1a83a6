package etcd_test

import (
	"bytes"
	"crypto/tls"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/pki"
)

// Field numbers of etcd's rpc.proto used below.
const (
	txnSuccess         = 2 // TxnRequest.success
	opRequestRange     = 1 // RequestOp.request_range
	opRequestDelete    = 3 // RequestOp.request_delete_range
	rangeKey           = 1 // RangeRequest.key
	rangeEnd           = 2 // RangeRequest.range_end
	rangeCountOnly     = 9 // RangeRequest.count_only
	putKey, putValue   = 1, 2
	putIgnoreValue     = 5 // PutRequest.ignore_value
	protoBool          = 1
	rawTxn, rawPut     = "/etcdserverpb.KV/Txn", "/etcdserverpb.KV/Put"
	rawRange           = "/etcdserverpb.KV/Range"
	tooComplexDeletes  = 200_000 // DeleteRange ops in one Txn: 800 KB, under etcd's 1.5 MiB
	secretKey, secretV = "/secret/a", "s3cr3t"
)

func lenField(num protowire.Number, body ...[]byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), slices.Concat(body...))
}

func boolField(num protowire.Number) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), protoBool)
}

// rawMessage is a message whose wire form is exactly b: what a hand-built
// client sends.
func rawMessage(b []byte) proto.Message {
	m := &emptypb.Empty{}
	m.ProtoReflect().SetUnknown(b)
	return m
}

// TestEtcdAmbiguousAndTooComplex sends hand-built protobuf through the
// example proxy to the real etcd: a Txn whose range op is spelled twice
// (count-only, then every value: protobuf-go would merge them into a
// count-only read, etcd keeps the second and returns every value), a Put
// whose ignore_value is spelled twice, and a Txn of 200,000 DeleteRange
// ops. The first two are refused with INVALID_ARGUMENT and an audited deny
// naming the field; the third is not decoded (too_complex) and forbidden by
// the example policy, and so is a Range padded past the node limit with
// fields etcd ignores; etcd sees none of them (its own call counters).
func TestEtcdAmbiguousAndTooComplex(t *testing.T) {
	requireEtcd(t)
	ctx := testCtx(t, 3*time.Minute)
	etcd, px := startExample(ctx, t)
	dir := px.dir
	deployer := px.client("deployer", deployerID)
	if out, stderr, err := px.etcdctl(ctx, deployer, "", "put", secretKey, secretV); err != nil || out != "OK\n" {
		t.Fatalf("etcdctl put = %q, %v (%s)", out, err, stderr)
	}

	ca, err := pki.LoadCA(filepath.Join(dir, "certs", "ca.pem"), filepath.Join(dir, "certs", "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(deployer.cert, deployer.key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(px.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1",
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	secrets := lenField(rangeKey, []byte("/secret/"))
	secrets = append(secrets, lenField(rangeEnd, []byte("/secret0"))...)
	countOnly := lenField(opRequestRange, secrets, boolField(rangeCountOnly))
	everything := lenField(opRequestRange, secrets)
	var deletes bytes.Buffer
	for range tooComplexDeletes {
		deletes.Write(lenField(txnSuccess, lenField(opRequestDelete)))
	}
	cases := []struct {
		name, method string
		in           []byte
		code         codes.Code
		msg          string
	}{
		{"countOnly trick", rawTxn, lenField(txnSuccess, countOnly, everything), codes.InvalidArgument, "ambiguous encoding: success[0].requestRange occurs more than once"},
		{"ignoreValue twice", rawPut, slices.Concat(lenField(putKey, []byte(secretKey)), lenField(putValue, []byte("overwritten")), boolField(putIgnoreValue), boolField(putIgnoreValue)),
			codes.InvalidArgument, "ambiguous encoding: ignoreValue occurs more than once"},
		{"Txn of 200,000 deletes", rawTxn, deletes.Bytes(), codes.PermissionDenied, "/etcdserverpb.KV/Txn with an unreadable request is forbidden"},
		// Padded past the node limit with fields etcd ignores, a read would hide its range.
		{"Range padded with 10,001 unknown fields", rawRange, slices.Concat(secrets, bytes.Repeat(boolField(100), 10_001)), codes.PermissionDenied, "request too complex to decode"},
	}
	for _, tc := range cases {
		rpc := tc.method[strings.LastIndexByte(tc.method, '/')+1:]
		before := etcd.started(ctx, t, "etcdserverpb.KV", rpc)
		err := conn.Invoke(ctx, tc.method, rawMessage(tc.in), &emptypb.Empty{})
		if st := status.Convert(err); st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: %v (%q), want %v containing %q", tc.name, st.Code(), st.Message(), tc.code, tc.msg)
		}
		if after := etcd.started(ctx, t, "etcdserverpb.KV", rpc); after != before {
			t.Errorf("%s: etcd started %d %s calls, want none", tc.name, after-before, rpc)
		}
	}
	if out, stderr, err := px.etcdctl(ctx, deployer, "", "get", secretKey); err != nil || out != secretKey+"\n"+secretV+"\n" {
		t.Errorf("etcdctl get %s = %q, %v (%s), want the value unchanged", secretKey, out, err, stderr)
	}

	if err := px.Stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("ztp-proxy after SIGTERM: %v", err)
	}
	var recs []*audit.Record
	if err := audit.ScanFile(ctx, px.auditPath, 1, func(r *audit.Record) error {
		if r.Type == audit.TypeRequest && r.Principal != nil && r.Principal.ID == deployerID && !r.RequestDecoded &&
			(r.Method == rawTxn || r.Method == rawPut || r.Method == rawRange) {
			recs = append(recs, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []struct{ detail, reason string }{
		{"ambiguous", cases[0].msg},
		{"ambiguous", cases[1].msg},
		{"too_complex", cases[2].msg},
		{"too_complex", cases[3].msg},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d undecoded request records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.Decision != audit.DecisionDeny || r.Detail != want[i].detail || !slices.ContainsFunc(r.Reasons, func(s string) bool { return strings.HasPrefix(s, want[i].reason) }) {
			t.Errorf("record %d: decision %q detail %q reasons %q; want deny, %q, %q", r.Seq, r.Decision, r.Detail, r.Reasons, want[i].detail, want[i].reason)
		}
	}
}
