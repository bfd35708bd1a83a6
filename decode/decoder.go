package decode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Resolver finds a method's descriptor by full gRPC method name
// "/pkg.Service/Method". Implementations must be safe for concurrent use.
type Resolver interface {
	FindMethod(ctx context.Context, fullMethod string) (protoreflect.MethodDescriptor, error)
}

// MethodInfo describes a method as far as the proxy needs it without decoding.
// The zero value means the method is unknown.
type MethodInfo struct {
	Known           bool
	ClientStreaming bool
	ServerStreaming bool
}

// Decoder renders request messages for the policy. It is safe for concurrent
// use; build one per descriptor source and keep it.
type Decoder struct {
	r Resolver
	// Bounds and rules of the wire pre-scan (see scanner).
	maxNodes, maxDepth int
	allowDup           bool

	mu sync.RWMutex
	// methods holds, per full method name, what decoding needs beyond the
	// descriptor. It only ever holds methods the Resolver found, so its size is
	// bounded by the schema, not by what clients send.
	methods map[string]*method
}

type method struct {
	md    protoreflect.MethodDescriptor
	info  MethodInfo
	types typeResolver
	// plans are the pre-scan's plans of the input and every message it can
	// hold (immutable once built).
	plans map[protoreflect.MessageDescriptor]*plan
	// partialOK is true when no message reachable from the input has proto2
	// required fields, so the unmarshal-time initialisation check, which
	// allocates on dynamic messages, can be skipped without changing results.
	partialOK bool
}

// Option configures a Decoder.
type Option func(*Decoder)

// WithLimits bounds the work of decoding one message: at most maxNodes field
// occurrences (each element of a packed repeated field and each map entry
// counts as one, as does every field of a message packed in an Any) and at
// most maxDepth nested messages. A message over either is not decoded: the
// error wraps [ErrTooComplex]. Zero or negative values keep the defaults,
// [DefaultMaxNodes] and [DefaultMaxDepth]; maxDepth is capped at
// [MaxDepthCeiling].
func WithLimits(maxNodes, maxDepth int) Option {
	return func(d *Decoder) {
		if maxNodes > 0 {
			d.maxNodes = maxNodes
		}
		if maxDepth > 0 {
			d.maxDepth = min(maxDepth, MaxDepthCeiling)
		}
	}
}

// AllowDuplicateFields makes the Decoder accept messages in which a
// non-repeated field, or two members of one oneof, occur more than once.
// They are then decoded as protobuf-go reads them (the last scalar wins,
// message occurrences are merged), which is not how every upstream reads
// them: the policy may judge a different request than the upstream runs.
func AllowDuplicateFields() Option {
	return func(d *Decoder) { d.allowDup = true }
}

// NewDecoder returns a Decoder that looks methods up in r.
func NewDecoder(r Resolver, opts ...Option) *Decoder {
	d := &Decoder{r: r, methods: make(map[string]*method), maxNodes: DefaultMaxNodes, maxDepth: DefaultMaxDepth}
	for _, o := range opts {
		o(d)
	}
	return d
}

// Decode unmarshals b as the method's input message and renders it as
// [ToMap] does. ok is false when the method is unknown, the bytes do not
// parse, the message has no protojson form, is over the Decoder's limits or
// has a non-repeated field twice ([Decoder.DecodeErr] says which); info is still
// filled in when the method is known. Numbers in req are json.Number, never
// float64, and encoding req with encoding/json gives the form [ToMap] documents.
//
// Decode never panics and never fails the call: what an undecodable request
// means is the policy's decision.
func (d *Decoder) Decode(ctx context.Context, fullMethod string, b []byte) (req map[string]any, info MethodInfo, ok bool) {
	req, info, err := d.DecodeErr(ctx, fullMethod, b)
	return req, info, err == nil
}

// DecodeErr is [Decoder.Decode] with the reason for a failure, for logs and
// audit records. The error wraps one of the package's sentinel errors.
func (d *Decoder) DecodeErr(ctx context.Context, fullMethod string, b []byte) (req map[string]any, info MethodInfo, err error) {
	req, _, info, err = d.decode(ctx, fullMethod, b, false)
	return req, info, err
}

// DecodeUnknown is [Decoder.DecodeErr] that also reports where the message
// carries fields its descriptors do not know: protojson leaves them out of
// req, so a policy would not see them. Each is a path of JSON names ending in
// the field number, lists transparent and map keys "*": "15",
// "success.requestPut.15", "labels.*.3"; sorted, without duplicates.
func (d *Decoder) DecodeUnknown(ctx context.Context, fullMethod string, b []byte) (req map[string]any, unknown []string, info MethodInfo, err error) {
	return d.decode(ctx, fullMethod, b, true)
}

func (d *Decoder) decode(ctx context.Context, fullMethod string, b []byte, findUnknown bool) (req map[string]any, unknown []string, info MethodInfo, err error) {
	m, err := d.method(ctx, fullMethod)
	if err != nil {
		return nil, nil, MethodInfo{}, err
	}
	// gRPC does not recover handler panics, so a panic here would take the
	// whole proxy down. This is not hypothetical: proto.Unmarshal in
	// google.golang.org/protobuf v1.36.12 panics on some malformed map
	// entries of dynamic messages (see TestDecode).
	defer func() {
		if p := recover(); p != nil {
			req, unknown, info, err = nil, nil, m.info, fmt.Errorf("%w: %s: panic while decoding: %v", ErrUndecodable, fullMethod, p)
		}
	}()
	// Before anything is allocated per field: a message too costly to decode,
	// or one that different runtimes read differently, is never unmarshalled.
	// The scan counts every unknown field too, which bounds the walk below.
	sc := scanner{types: m.types, plans: m.plans, maxNodes: d.maxNodes, maxDepth: d.maxDepth, allowDup: d.allowDup}
	if err := sc.scan(m.md.Input(), b); err != nil {
		var dup *DuplicateFieldError
		if errors.As(err, &dup) {
			dup.finish()
		}
		return nil, nil, m.info, fmt.Errorf("%s: %w", fullMethod, err)
	}
	msg := dynamicpb.NewMessage(m.md.Input())
	// Unknown fields are kept so that a newer client's fields never make a
	// request undecodable (DecodeUnknown reports where they are); AllowPartial
	// stays false, so missing proto2 required fields are rejected here as
	// protojson would.
	opts := proto.UnmarshalOptions{DiscardUnknown: false, Resolver: m.types, AllowPartial: m.partialOK}
	if err := opts.Unmarshal(b, msg); err != nil {
		return nil, nil, m.info, fmt.Errorf("%w: %s: %w", ErrUndecodable, fullMethod, err)
	}
	req, mayHide, err := render(msg, m.types, false)
	if err != nil {
		return nil, nil, m.info, fmt.Errorf("%s: %w", fullMethod, err)
	}
	if findUnknown && mayHide {
		unknown = unknownFields(msg, m.types, "", nil)
		if len(unknown) > 1 {
			slices.Sort(unknown)
			unknown = slices.Compact(unknown)
		}
	}
	return req, unknown, m.info, nil
}

// unknownFields appends the paths of m's unknown fields, and those of every
// message inside it (also those packed in a google.protobuf.Any, which
// protojson renders inline), to out.
func unknownFields(m protoreflect.Message, types typeResolver, prefix string, out []string) []string {
	join := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	for b := m.GetUnknown(); len(b) > 0; {
		num, _, n := protowire.ConsumeField(b)
		if n < 0 {
			out = append(out, join("?")) // unparsable; proto.Unmarshal kept it anyway
			break
		}
		out = append(out, join(strconv.Itoa(int(num))))
		b = b[n:]
	}
	if m.Descriptor().FullName() == "google.protobuf.Any" {
		return unknownInAny(m, types, prefix, join, out)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				p := join(fd.JSONName()) + ".*"
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					out = unknownFields(mv.Message(), types, p, out)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				l := v.List()
				for i := range l.Len() {
					out = unknownFields(l.Get(i).Message(), types, join(fd.JSONName()), out)
				}
			}
		case fd.Message() != nil:
			out = unknownFields(v.Message(), types, join(fd.JSONName()), out)
		}
		return true
	})
	return out
}

// Info returns the method's streaming shape without decoding anything; the
// zero MethodInfo when the method is unknown.
func (d *Decoder) Info(ctx context.Context, fullMethod string) MethodInfo {
	m, err := d.method(ctx, fullMethod)
	if err != nil {
		return MethodInfo{}
	}
	return m.info
}

func (d *Decoder) method(ctx context.Context, fullMethod string) (*method, error) {
	md, err := d.r.FindMethod(ctx, fullMethod)
	if err != nil {
		return nil, err
	}
	d.mu.RLock()
	m := d.methods[fullMethod]
	d.mu.RUnlock()
	// A resolver may hand out a new descriptor for the same name after a
	// refresh; the cached types then belong to the old schema.
	if m != nil && m.md == md {
		return m, nil
	}
	m = &method{
		md: md,
		info: MethodInfo{
			Known:           true,
			ClientStreaming: md.IsStreamingClient(),
			ServerStreaming: md.IsStreamingServer(),
		},
		types:     typesFor(d.r, md),
		partialOK: !mayHaveRequired(md.Input(), make(map[protoreflect.FullName]bool)),
		plans:     make(map[protoreflect.MessageDescriptor]*plan),
	}
	buildPlan(md.Input(), m.plans)
	d.mu.Lock()
	d.methods[fullMethod] = m
	d.mu.Unlock()
	return m, nil
}

// mayHaveRequired reports whether a message of type md can contain a proto2
// required field anywhere inside it. Extensions are counted as possible
// carriers because any extension could be a message with required fields.
func mayHaveRequired(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	if md.RequiredNumbers().Len() > 0 || md.ExtensionRanges().Len() > 0 {
		return true
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if sub := fd.Message(); sub != nil && mayHaveRequired(sub, seen) {
			return true
		}
	}
	return false
}

// typeSource is implemented by resolvers that know more types than a method's
// own imports, such as a whole protoset.
type typeSource interface {
	types() *dynamicpb.Types
}

// typesFor returns the types used to recognise extensions in requests and to
// expand google.protobuf.Any: the resolver's own when it has them, otherwise
// the transitive imports of the method's file. Any falls back to the global
// registry so that well-known types packed in an Any still print.
func typesFor(r Resolver, md protoreflect.MethodDescriptor) typeResolver {
	if ts, ok := r.(typeSource); ok {
		return withGlobalMessages{ts.types()}
	}
	files := new(protoregistry.Files)
	seen := make(map[string]bool)
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] || f.IsPlaceholder() {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		// The closure of one linked file cannot conflict with itself; if it
		// did, the type would merely be missing and Any would not resolve.
		_ = files.RegisterFile(f)
	}
	add(md.ParentFile())
	return withGlobalMessages{dynamicpb.NewTypes(files)}
}

// withGlobalMessages resolves extensions only from the request's own
// descriptors (a global extension of a same-named message would be a
// different schema), and message types for Any from them first, then from
// the global registry.
type withGlobalMessages struct {
	local *dynamicpb.Types
}

func (w withGlobalMessages) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return w.local.FindExtensionByName(name)
}

func (w withGlobalMessages) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return w.local.FindExtensionByNumber(message, field)
}

func (w withGlobalMessages) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if mt, err := w.local.FindMessageByName(name); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (w withGlobalMessages) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	if mt, err := w.local.FindMessageByURL(url); err == nil {
		return mt, nil
	}
	return protoregistry.GlobalTypes.FindMessageByURL(url)
}

// splitMethod splits "/pkg.Service/Method" into its service and method names.
func splitMethod(fullMethod string) (protoreflect.FullName, protoreflect.Name, error) {
	rest, ok := strings.CutPrefix(fullMethod, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: %q", ErrBadMethodName, fullMethod)
	}
	svc, meth, ok := strings.Cut(rest, "/")
	service, name := protoreflect.FullName(svc), protoreflect.Name(meth)
	if !ok || !service.IsValid() || !name.IsValid() {
		return "", "", fmt.Errorf("%w: %q", ErrBadMethodName, fullMethod)
	}
	return service, name, nil
}

// unknownInAny reports the unknown fields of the message an Any packs, which
// protojson renders under the Any's own path. A packed message that cannot be
// resolved or parsed is reported as "<path>.?": its content is not what the
// policy saw.
func unknownInAny(m protoreflect.Message, types typeResolver, prefix string, join func(string) string, out []string) []string {
	fields := m.Descriptor().Fields()
	urlField, valueField := fields.ByNumber(1), fields.ByNumber(2)
	if urlField == nil || valueField == nil {
		return append(out, join("?"))
	}
	url := m.Get(urlField).String()
	if url == "" {
		return out // an empty Any: protojson prints {}
	}
	mt, err := types.FindMessageByURL(url)
	if err != nil {
		return append(out, join("?"))
	}
	inner := mt.New()
	if err := (proto.UnmarshalOptions{AllowPartial: true, Resolver: types}).Unmarshal(m.Get(valueField).Bytes(), inner.Interface()); err != nil {
		return append(out, join("?"))
	}
	return unknownFields(inner, types, prefix, out)
}
