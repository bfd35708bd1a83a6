package decode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

const (
	defaultNegativeTTL  = 10 * time.Second
	defaultFetchTimeout = 10 * time.Second

	// maxEntries bounds the service cache. Service names come from clients,
	// so failed lookups of made-up names must not grow it without limit;
	// successful ones are bounded by the upstream's real schema.
	maxEntries = 1024

	// maxReflectionFiles bounds how many files one fetch may pull, so that a
	// misbehaving upstream cannot keep the exchange going forever.
	maxReflectionFiles = 4096

	methodV1      = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	methodV1Alpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

// ReflectionOptions tune a [Reflection] resolver. The zero value is usable.
type ReflectionOptions struct {
	// NegativeTTL is how long a failed service lookup (unknown service, no
	// reflection, upstream unreachable) is remembered before the upstream is
	// asked again. It is also the minimum age of a cached service before a
	// request for a method it lacks makes the service be fetched again, so
	// methods added by an upstream redeploy are found without a restart.
	// Default 10s.
	NegativeTTL time.Duration
	// FetchTimeout bounds one reflection exchange. Default 10s.
	FetchTimeout time.Duration
	// Now is the clock used for NegativeTTL. Default time.Now.
	Now func() time.Time
}

// Reflection is a [Resolver] that asks the upstream through gRPC server
// reflection (grpc.reflection.v1, falling back to v1alpha when v1 is
// UNIMPLEMENTED). It caches per service, remembers failures for
// NegativeTTL, and lets concurrent lookups of one service share one fetch.
// It is safe for concurrent use and starts no goroutine that outlives a
// fetch.
//
// Descriptors of a service, once fetched, are kept for the life of the
// Reflection: a changed message shape needs a new Reflection (a proxy
// restart); only missing methods trigger a refresh.
type Reflection struct {
	conn grpc.ClientConnInterface
	opts ReflectionOptions

	// alpha is set once the upstream answered v1 with UNIMPLEMENTED and
	// v1alpha worked, to spare it a failing v1 call on every fetch.
	alpha atomic.Bool

	mu       sync.Mutex
	services map[protoreflect.FullName]*fetch
	// refreshing holds a running re-fetch of a cached service while the old
	// entry keeps answering lookups of the methods it knows.
	refreshing map[protoreflect.FullName]*fetch
}

// fetch is one reflection exchange for a service. Its fields are written
// before done is closed and only read after.
type fetch struct {
	done chan struct{}
	sd   protoreflect.ServiceDescriptor
	err  error
	at   time.Time // when the result was obtained
}

func (f *fetch) finished() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// NewReflection returns a resolver that fetches descriptors over conn, which
// should be the connection to the upstream itself.
func NewReflection(conn grpc.ClientConnInterface, opts ReflectionOptions) *Reflection {
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = defaultNegativeTTL
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = defaultFetchTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Reflection{
		conn:       conn,
		opts:       opts,
		services:   make(map[protoreflect.FullName]*fetch),
		refreshing: make(map[protoreflect.FullName]*fetch),
	}
}

// FindMethod implements [Resolver]. ctx bounds only the caller's wait: the
// fetch itself runs on its own FetchTimeout, since other callers may be
// waiting for the same result.
func (r *Reflection) FindMethod(ctx context.Context, fullMethod string) (protoreflect.MethodDescriptor, error) {
	service, name, err := splitMethod(fullMethod)
	if err != nil {
		return nil, err
	}
	f, err := r.service(ctx, service)
	if err != nil {
		return nil, err
	}
	if f.err != nil {
		return nil, f.err
	}
	if md := f.sd.Methods().ByName(name); md != nil {
		return md, nil
	}
	if f, err = r.refresh(ctx, service, f); err != nil {
		return nil, err
	}
	if f.err == nil {
		if md := f.sd.Methods().ByName(name); md != nil {
			return md, nil
		}
	}
	return nil, fmt.Errorf("%w %s in service %s (upstream reflection)", ErrUnknownMethod, name, service)
}

// service returns the finished fetch for a service, starting one unless a
// usable result or a running fetch is cached.
func (r *Reflection) service(ctx context.Context, service protoreflect.FullName) (*fetch, error) {
	r.mu.Lock()
	f := r.services[service]
	if f != nil && f.finished() && f.err != nil && r.opts.Now().Sub(f.at) >= r.opts.NegativeTTL {
		f = nil
	}
	if f == nil {
		if len(r.services) >= maxEntries {
			r.evictFailuresLocked()
		}
		f = r.startLocked(service, nil)
		r.services[service] = f
	}
	r.mu.Unlock()
	return r.wait(ctx, f)
}

// refresh re-fetches a cached service that lacks a requested method, at most
// once per NegativeTTL, and installs the result if it succeeds.
func (r *Reflection) refresh(ctx context.Context, service protoreflect.FullName, old *fetch) (*fetch, error) {
	r.mu.Lock()
	if cur := r.services[service]; cur != old {
		// Replaced since we looked (a refresh finished, or the entry was
		// evicted): use what is there now.
		r.mu.Unlock()
		return r.service(ctx, service)
	}
	f := r.refreshing[service]
	if f == nil {
		if r.opts.Now().Sub(old.at) < r.opts.NegativeTTL {
			r.mu.Unlock()
			return old, nil
		}
		f = r.startLocked(service, func(f *fetch) {
			delete(r.refreshing, service)
			if r.services[service] != old {
				return
			}
			if f.err == nil {
				r.services[service] = f
				return
			}
			// Keep serving the old descriptors, but restart the clock so an
			// unknown method does not cause a fetch per message.
			kept := &fetch{done: make(chan struct{}), sd: old.sd, at: f.at}
			close(kept.done)
			r.services[service] = kept
		})
		r.refreshing[service] = f
	}
	r.mu.Unlock()
	return r.wait(ctx, f)
}

// evictFailuresLocked drops finished failed entries. Pending and successful
// entries stay: the former are bounded by in-flight requests, the latter by
// the upstream's schema.
func (r *Reflection) evictFailuresLocked() {
	for name, f := range r.services {
		if f.finished() && f.err != nil {
			delete(r.services, name)
		}
	}
}

// startLocked starts fetching a service in its own goroutine; done, if not
// nil, runs under r.mu when the result is in, before waiters wake.
func (r *Reflection) startLocked(service protoreflect.FullName, done func(*fetch)) *fetch {
	f := &fetch{done: make(chan struct{})}
	go func() {
		// Detached from any caller: a caller giving up must not fail the
		// fetch for everyone else waiting on it.
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.FetchTimeout)
		sd, err := r.fetchService(ctx, service)
		cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		f.sd, f.err, f.at = sd, err, r.opts.Now()
		if done != nil {
			done(f)
		}
		close(f.done)
	}()
	return f
}

func (r *Reflection) wait(ctx context.Context, f *fetch) (*fetch, error) {
	select {
	case <-f.done:
		return f, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for descriptors: %w", ErrReflection, ctx.Err())
	}
}

func (r *Reflection) fetchService(ctx context.Context, service protoreflect.FullName) (protoreflect.ServiceDescriptor, error) {
	if !r.alpha.Load() {
		sd, err := r.exchange(ctx, methodV1, service)
		if status.Code(err) != codes.Unimplemented {
			return sd, wrapReflection(service, err)
		}
	}
	sd, err := r.exchange(ctx, methodV1Alpha, service)
	if status.Code(err) == codes.Unimplemented {
		return nil, fmt.Errorf("%w (looking up %s): %w", ErrNoReflection, service, err)
	}
	if err == nil {
		r.alpha.Store(true)
	}
	return sd, wrapReflection(service, err)
}

// wrapReflection gives transport errors from the stream (upstream down,
// deadline) the package's sentinel; errors made here already have one.
func wrapReflection(service protoreflect.FullName, err error) error {
	if err == nil || errors.Is(err, ErrReflection) || errors.Is(err, ErrUnknownService) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrReflection, service, err)
}

var reflectionStream = grpc.StreamDesc{
	StreamName:    "ServerReflectionInfo",
	ClientStreams: true,
	ServerStreams: true,
}

// exchange runs one ServerReflectionInfo stream: the file defining the
// service, then, one by one, any dependency the upstream did not volunteer.
// v1 and v1alpha messages are identical on the wire (v1 is v1alpha renamed),
// so the v1 Go types serve both method names.
//
// Errors that are gRPC statuses from the stream itself are returned
// unwrapped, so the caller can tell UNIMPLEMENTED apart.
func (r *Reflection) exchange(ctx context.Context, method string, service protoreflect.FullName) (protoreflect.ServiceDescriptor, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream whatever happens below
	// The upstream connection may carry a raw pass-through codec as a default
	// call option for the forwarder; reflection needs real protobuf.
	cs, err := r.conn.NewStream(ctx, &reflectionStream, method, grpc.ForceCodecV2(protoCodec{}))
	if err != nil {
		return nil, err
	}
	ask := func(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
		// A failed send (io.EOF) means the stream ended; RecvMsg has the status.
		if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		resp := new(rpb.ServerReflectionResponse)
		if err := cs.RecvMsg(resp); err != nil {
			return nil, err
		}
		return resp, nil
	}

	files := make(map[string]*descriptorpb.FileDescriptorProto)
	var order []string
	add := func(resp *rpb.ServerReflectionResponse) error {
		for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fdp := new(descriptorpb.FileDescriptorProto)
			if err := proto.Unmarshal(b, fdp); err != nil {
				return fmt.Errorf("%w: %s: bad file descriptor from upstream: %w", ErrReflection, service, err)
			}
			if _, dup := files[fdp.GetName()]; !dup {
				files[fdp.GetName()] = fdp
				order = append(order, fdp.GetName())
			}
		}
		if len(files) > maxReflectionFiles {
			return fmt.Errorf("%w: %s: upstream sent more than %d files", ErrReflection, service, maxReflectionFiles)
		}
		return nil
	}

	resp, err := ask(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: string(service)},
	})
	if err != nil {
		return nil, err
	}
	if e := resp.GetErrorResponse(); e != nil {
		if codes.Code(e.GetErrorCode()) == codes.NotFound {
			return nil, fmt.Errorf("%w %s (upstream reflection)", ErrUnknownService, service)
		}
		return nil, fmt.Errorf("%w: %s: upstream answered %v: %s", ErrReflection, service, codes.Code(e.GetErrorCode()), e.GetErrorMessage())
	}
	if err := add(resp); err != nil {
		return nil, err
	}

	// Servers need not send dependencies unasked (grpc-go does, others
	// don't); ask for each missing one by file name.
	asked := make(map[string]bool)
	for i := 0; i < len(order); i++ {
		for _, dep := range files[order[i]].GetDependency() {
			if _, ok := files[dep]; ok || asked[dep] {
				continue
			}
			asked[dep] = true
			resp, err := ask(&rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep},
			})
			if err != nil {
				return nil, err
			}
			if resp.GetErrorResponse() != nil {
				// The upstream may not serve a file it merely imports, such as
				// descriptor.proto; the compiled-in copy is the same file.
				if gf, gerr := protoregistry.GlobalFiles.FindFileByPath(dep); gerr == nil {
					files[dep] = protodesc.ToFileDescriptorProto(gf)
					order = append(order, dep)
					continue
				}
				e := resp.GetErrorResponse()
				return nil, fmt.Errorf("%w: %s: upstream cannot supply %s: %s", ErrReflection, service, dep, e.GetErrorMessage())
			}
			if err := add(resp); err != nil {
				return nil, err
			}
		}
	}
	_ = cs.CloseSend()

	set := &descriptorpb.FileDescriptorSet{File: make([]*descriptorpb.FileDescriptorProto, 0, len(order))}
	for _, name := range order {
		set.File = append(set.File, files[name])
	}
	reg, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: linking upstream descriptors: %w", ErrReflection, service, err)
	}
	d, err := reg.FindDescriptorByName(service)
	if err != nil {
		return nil, fmt.Errorf("%w %s (upstream reflection)", ErrUnknownService, service)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%w %s: upstream says it is not a service", ErrUnknownService, service)
	}
	return sd, nil
}

// protoCodec marshals reflection messages with the protobuf runtime
// directly, independent of whatever codec is registered under "proto".
type protoCodec struct{}

func (protoCodec) Name() string { return "proto" }

func (protoCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("decode: reflection codec cannot marshal %T", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (protoCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("decode: reflection codec cannot unmarshal into %T", v)
	}
	return proto.Unmarshal(data.Materialize(), m)
}
