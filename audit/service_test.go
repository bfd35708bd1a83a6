package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
)

// serve runs the Audit service over s on an in-memory gRPC connection.
func serve(t testing.TB, s *Store) ztpv1.AuditClient {
	t.Helper()
	c, _ := serveService(t, NewService(s))
	return c
}

// serveService runs svc on an in-memory gRPC connection that t's cleanup
// closes; the server is returned for tests that stop it themselves.
func serveService(t testing.TB, svc *Service) (ztpv1.AuditClient, *grpc.Server) {
	t.Helper()
	lis := bufconn.Listen(4 << 20)
	srv := grpc.NewServer()
	ztpv1.RegisterAuditServer(srv, svc)
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return ztpv1.NewAuditClient(conn), srv
}

func appendN(t *testing.T, s *Store, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := s.Append(testCtx(t), requestRecord(i)); err != nil {
					t.Errorf("Append: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

func wantCode(t *testing.T, call string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s = %v, want %v", call, err, code)
	}
}

func TestServiceExport(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	n := exportChunkLines*2 + 7
	appendN(t, s, n)
	c := serve(t, s)
	want := storeLines(t, s)

	stream, err := c.Export(testCtx(t), &ztpv1.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	chunks := 0
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		chunks++
		got = append(got, ch.GetLines()...)
	}
	if len(got) != n || chunks != 3 {
		t.Fatalf("Export streamed %d lines in %d chunks, want %d in 3", len(got), chunks, n)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("line %d differs from the stored bytes:\n%s\n%s", i, got[i], want[i])
		}
	}
}

func TestServiceExportFilters(t *testing.T) {
	s := exportLog(t)
	c := serve(t, s)
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	seqs := func(req *ztpv1.ExportRequest) ([]uint64, error) {
		stream, err := c.Export(testCtx(t), req)
		if err != nil {
			return nil, err
		}
		var out []uint64
		for {
			ch, err := stream.Recv()
			if err == io.EOF {
				return out, nil
			}
			if err != nil {
				return out, err
			}
			for _, l := range ch.GetLines() {
				r, err := ParseLine(l)
				if err != nil {
					return out, err
				}
				out = append(out, r.Seq)
			}
		}
	}
	for _, tc := range []struct {
		name string
		req  *ztpv1.ExportRequest
		want []uint64
		code codes.Code
	}{
		{"since and until", &ztpv1.ExportRequest{Since: timestamppb.New(t0.Add(time.Minute)), Until: timestamppb.New(t0.Add(3 * time.Minute))}, []uint64{2, 3}, codes.OK},
		{"principal, method, decision", &ztpv1.ExportRequest{Principal: "spiffe://example.org/user/alice", Method: "*/DeleteRange", Decision: "allow"}, []uint64{6}, codes.OK},
		{"grant from seq", &ztpv1.ExportRequest{Grant: "bg-1", FromSeq: 6}, []uint64{6}, codes.OK},
		{"bad glob", &ztpv1.ExportRequest{Method: "["}, nil, codes.InvalidArgument},
		{"invalid timestamp", &ztpv1.ExportRequest{Since: &timestamppb.Timestamp{Nanos: -1}}, nil, codes.InvalidArgument},
		{"follow with until", &ztpv1.ExportRequest{Until: timestamppb.New(t0), Follow: true}, nil, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := seqs(tc.req)
			if status.Code(err) != tc.code || (tc.code == codes.OK && !equalSeqs(got, tc.want)) {
				t.Errorf("Export(%v) = %v, %v; want %v, %v", tc.req, got, err, tc.want, tc.code)
			}
		})
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestServiceFollow: a follower gets what exists, then each commit as a
// chunk of its own (nothing waits in a half-full buffer), until it hangs up.
func TestServiceFollow(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	appendN(t, s, 3)
	c := serve(t, s)
	ctx, cancel := context.WithCancel(testCtx(t))
	stream, err := c.Export(ctx, &ztpv1.ExportRequest{Follow: true, FromSeq: 2})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() []uint64 {
		t.Helper()
		ch, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		var out []uint64
		for _, l := range ch.GetLines() {
			r, _ := ParseLine(l)
			out = append(out, r.Seq)
		}
		return out
	}
	if got := recv(); !equalSeqs(got, []uint64{2, 3}) {
		t.Fatalf("first chunk = %v, want [2 3]", got)
	}
	mustAppend(t, s, requestRecord(9))
	if got := recv(); !equalSeqs(got, []uint64{4}) {
		t.Fatalf("chunk after an append = %v, want [4]", got)
	}
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel = %v, want Canceled", err)
	}
}

func TestServiceVerify(t *testing.T) {
	s, _ := signingStore(t, fixedClock())
	appendN(t, s, 5)
	c := serve(t, s)
	ctx := testCtx(t)
	seq, hash := s.Head()
	resp, err := c.Verify(ctx, &ztpv1.VerifyRequest{})
	if err != nil || !resp.GetOk() || resp.GetRecords() != seq || resp.GetHeadHash() != hash || resp.GetCheckpointChecked() {
		t.Fatalf("Verify = %v, %v; want ok with %d records, head %s", resp, err, seq, hash)
	}
	cp, err := s.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 2)
	resp, err = c.Verify(ctx, &ztpv1.VerifyRequest{Checkpoint: cp.Signed})
	if err != nil || !resp.GetOk() || !resp.GetCheckpointChecked() || resp.GetRecords() != 7 {
		t.Errorf("Verify(checkpoint of 5 of 7) = %v, %v; want ok, checked", resp, err)
	}
	// A checkpoint of another log with the same size: the log does not extend it.
	forged, _ := NewSigner(testKey()).Sign(Checkpoint{Size: 5, Hash: strings.Repeat("ab", 32)})
	resp, err = c.Verify(ctx, &ztpv1.VerifyRequest{Checkpoint: forged.Signed})
	if err != nil || resp.GetOk() || resp.GetBadSeq() != 5 || resp.GetFault() != string(FaultCheckpoint) {
		t.Errorf("Verify(foreign checkpoint) = %v, %v; want not ok, checkpoint_mismatch at 5", resp, err)
	}
	ahead, _ := NewSigner(testKey()).Sign(Checkpoint{Size: 100, Hash: strings.Repeat("ab", 32)})
	resp, err = c.Verify(ctx, &ztpv1.VerifyRequest{Checkpoint: ahead.Signed})
	if err != nil || resp.GetOk() || resp.GetBadSeq() != 8 || resp.GetFault() != string(FaultMissing) {
		t.Errorf("Verify(checkpoint beyond the log) = %v, %v; want not ok, missing at 8", resp, err)
	}
	_, err = c.Verify(ctx, &ztpv1.VerifyRequest{Checkpoint: []byte("not a checkpoint")})
	wantCode(t, "Verify(malformed checkpoint)", err, codes.InvalidArgument)
}

func TestServiceLatestCheckpoint(t *testing.T) {
	s, _ := openTestStore(t, Options{Now: fixedClock()})
	c := serve(t, s)
	ctx := testCtx(t)
	appendN(t, s, 2)
	_, err := c.LatestCheckpoint(ctx, &ztpv1.LatestCheckpointRequest{})
	wantCode(t, "LatestCheckpoint without a key", err, codes.NotFound)

	s.SignCheckpoints(NewSigner(testKey()))
	pub := testKey().Public()
	for _, want := range []uint64{2, 3} {
		cp, err := c.LatestCheckpoint(ctx, &ztpv1.LatestCheckpointRequest{})
		if err != nil {
			t.Fatal(err)
		}
		opened, err := OpenCheckpoint(cp.GetSigned(), pub.(ed25519.PublicKey))
		if err != nil || opened.Size != want || cp.GetSize() != want || cp.GetHash() != opened.Hash || !cp.GetTime().AsTime().Equal(opened.Time) {
			t.Errorf("LatestCheckpoint = %v (%+v, %v); want a signed checkpoint of %d records", cp, opened, err, want)
		}
		mustAppend(t, s, requestRecord(0))
	}
	s.SignCheckpoints(nil)
	s.Close()
	_, err = c.LatestCheckpoint(ctx, &ztpv1.LatestCheckpointRequest{})
	wantCode(t, "LatestCheckpoint after Close", err, codes.Unavailable)
	_, err = c.Verify(ctx, &ztpv1.VerifyRequest{})
	wantCode(t, "Verify after Close", err, codes.Unavailable)
}

func TestRPCStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{nil, codes.OK},
		{context.Canceled, codes.Canceled},
		{ErrInvalidFilter, codes.InvalidArgument},
		{ErrBadCheckpoint, codes.InvalidArgument},
		{ErrNoCheckpoint, codes.NotFound},
		{&VerifyError{Fault: FaultMissing}, codes.FailedPrecondition},
		{ErrClosed, codes.Unavailable},
		{ErrWrite, codes.Unavailable},
		{ErrCorrupt, codes.DataLoss},
		{errors.New("other"), codes.Internal},
		{status.Error(codes.ResourceExhausted, "x"), codes.ResourceExhausted},
	} {
		if got := status.Code(rpcStatus(tc.err)); got != tc.code {
			t.Errorf("rpcStatus(%v) = %v, want %v", tc.err, got, tc.code)
		}
	}
}

func TestServiceStopFollowers(t *testing.T) {
	s, _ := openTestStore(t, Options{})
	appendN(t, s, 2)
	svc := NewService(s)
	c, srv := serveService(t, svc)
	stream, err := c.Export(testCtx(t), &ztpv1.ExportRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	svc.StopFollowers()
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Recv after StopFollowers = %v, want Unavailable", err)
	}
	srv.GracefulStop() // returns: no follower holds it
}
