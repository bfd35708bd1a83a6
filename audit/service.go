package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
)

// Export chunks: small enough to stay far below gRPC's default 4 MiB
// message limit, large enough that a million records are a few thousand
// messages. A single larger record goes in a chunk of its own.
const (
	exportChunkLines = 512
	exportChunkBytes = 1 << 20
)

// Service serves ztp.v1.Audit from a Store. It does no authorization: the
// proxy admits only principals in audit.readers groups to /ztp.v1.Audit/*
// before a handler runs, and audits the call like any other.
type Service struct {
	ztpv1.UnimplementedAuditServer
	store    *Store
	stop     chan struct{} // closed by StopFollowers
	stopOnce sync.Once
}

// NewService returns the ztp.v1.Audit service over s.
func NewService(s *Store) *Service { return &Service{store: s, stop: make(chan struct{})} }

// StopFollowers ends every following export (and refuses new ones) with
// UNAVAILABLE, so that a graceful stop of the server need not wait for
// them: a follower never ends by itself. Call it when draining starts.
func (s *Service) StopFollowers() { s.stopOnce.Do(func() { close(s.stop) }) }

var _ ztpv1.AuditServer = (*Service)(nil)

// Export streams the matching records' exact stored lines in seq order.
// With follow, it keeps streaming records as they are committed until the
// client cancels or the proxy stops. Memory is bounded by one read chunk
// and one message: gRPC flow control holds the reader back when the
// client reads slowly.
func (s *Service) Export(req *ztpv1.ExportRequest, stream grpc.ServerStreamingServer[ztpv1.ExportChunk]) error {
	f, err := filterFromRequest(req)
	if err != nil {
		return rpcStatus(err)
	}
	chunk, size := &ztpv1.ExportChunk{}, 0
	flush := func() error {
		if len(chunk.Lines) == 0 {
			return nil
		}
		err := stream.Send(chunk)
		chunk, size = &ztpv1.ExportChunk{}, 0
		return err
	}
	emit := func(_ uint64, line []byte) error {
		chunk.Lines = append(chunk.Lines, line)
		size += len(line)
		if len(chunk.Lines) >= exportChunkLines || size >= exportChunkBytes {
			return flush()
		}
		return nil
	}
	ctx := stream.Context()
	if !req.GetFollow() {
		if err = s.store.Export(ctx, f, emit); err == nil {
			err = flush()
		}
		return rpcStatus(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err = s.store.Follow(ctx, f, emit, flush)
	select {
	case <-s.stop:
		return status.Error(codes.Unavailable, "ztp: proxy shutting down; resume the export with from_seq")
	default:
	}
	return rpcStatus(err)
}

func filterFromRequest(req *ztpv1.ExportRequest) (Filter, error) {
	f := Filter{
		Principal: req.GetPrincipal(),
		Method:    req.GetMethod(),
		Decision:  req.GetDecision(),
		Grant:     req.GetGrant(),
		FromSeq:   req.GetFromSeq(),
	}
	if ts := req.GetSince(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return Filter{}, fmt.Errorf("%w: since: %w", ErrInvalidFilter, err)
		}
		f.Since = ts.AsTime()
	}
	if ts := req.GetUntil(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return Filter{}, fmt.Errorf("%w: until: %w", ErrInvalidFilter, err)
		}
		f.Until = ts.AsTime()
	}
	return f, nil
}

// Verify walks the whole chain and, when the request carries a checkpoint,
// checks that the log extends it. The checkpoint's signature is not
// checked here: the caller, who holds the public key, does that (ztpctl
// audit verify --pubkey); the proxy only answers whether its log contains
// record size with that hash. A broken chain is a successful call with
// ok false.
func (s *Service) Verify(ctx context.Context, req *ztpv1.VerifyRequest) (*ztpv1.VerifyResponse, error) {
	var (
		res VerifyResult
		err error
	)
	if len(req.GetCheckpoint()) > 0 {
		cp, perr := ParseCheckpoint(req.GetCheckpoint())
		if perr != nil {
			return nil, rpcStatus(perr)
		}
		res, err = s.store.VerifyExtends(ctx, cp)
	} else {
		res, err = s.store.Verify(ctx)
	}
	if verr := (*VerifyError)(nil); err != nil && !errors.As(err, &verr) {
		return nil, rpcStatus(err)
	}
	resp := &ztpv1.VerifyResponse{
		Ok:                res.OK(),
		Records:           res.Records,
		HeadSeq:           res.HeadSeq,
		HeadHash:          res.HeadHash,
		CheckpointChecked: len(req.GetCheckpoint()) > 0,
	}
	if p := res.Problem; p != nil {
		resp.BadSeq, resp.Fault, resp.Detail = p.Seq, string(p.Fault), p.Detail
	}
	return resp, nil
}

// LatestCheckpoint returns a signed checkpoint of the current head: with a
// signing key it signs the head if it moved since the last checkpoint (so
// a cron job shipping checkpoints off the host always gets a fresh one);
// without one, the latest checkpoint stored, if any.
func (s *Service) LatestCheckpoint(context.Context, *ztpv1.LatestCheckpointRequest) (*ztpv1.Checkpoint, error) {
	c, err := s.store.Checkpoint()
	if errors.Is(err, ErrNoSigner) {
		c, err = s.store.LatestCheckpoint()
		if errors.Is(err, ErrNoCheckpoint) {
			return nil, status.Error(codes.NotFound, "ztp: no checkpoint: audit.signing_key is not configured")
		}
	}
	if err != nil {
		return nil, rpcStatus(err)
	}
	return &ztpv1.Checkpoint{Signed: c.Signed, Size: c.Size, Hash: c.Hash, Time: timestamppb.New(c.Time)}, nil
}

// rpcStatus maps the package's errors to gRPC codes.
func rpcStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status (e.g. from stream.Send)
	}
	code := codes.Internal
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, ErrInvalidFilter), errors.Is(err, ErrBadCheckpoint):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNoCheckpoint):
		code = codes.NotFound
	case errors.Is(err, ErrChainBroken):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrClosed), errors.Is(err, ErrWrite):
		code = codes.Unavailable
	case errors.Is(err, ErrCorrupt):
		code = codes.DataLoss
	}
	return status.Error(code, "ztp: "+err.Error())
}
