package decode

import "errors"

var (
	// ErrBadMethodName is returned when a full method name is not of the form
	// "/package.Service/Method".
	ErrBadMethodName = errors.New("decode: malformed method name")

	// ErrUnknownService is returned when the descriptor source has no service of
	// that name.
	ErrUnknownService = errors.New("decode: unknown service")

	// ErrUnknownMethod is returned when the service is known but has no method of
	// that name.
	ErrUnknownMethod = errors.New("decode: unknown method")

	// ErrInvalidProtoset is returned when a protoset file is not a
	// FileDescriptorSet, is empty, or its files cannot be linked (for example a
	// dependency that was not included with --include_imports).
	ErrInvalidProtoset = errors.New("decode: invalid protoset")

	// ErrNoReflection is returned when the upstream serves neither
	// grpc.reflection.v1 nor grpc.reflection.v1alpha.
	ErrNoReflection = errors.New("decode: upstream does not serve gRPC reflection")

	// ErrReflection is returned when a reflection exchange with the upstream
	// fails or yields descriptors that cannot be linked.
	ErrReflection = errors.New("decode: reflection failed")

	// ErrUndecodable is returned when request bytes do not parse as the method's
	// input message.
	ErrUndecodable = errors.New("decode: request does not parse")

	// ErrUnrenderable is returned when a message has no protojson form: a string
	// holding invalid UTF-8, missing proto2 required fields, a well-known type
	// with out-of-range values, an Any whose type cannot be resolved, or a
	// proto1 MessageSet. protojson.Marshal refuses the same messages, and
	// also these, which it would print: messages nested more than 10,000
	// deep counted across Anys, and more than 64 MiB unpacked from Anys
	// inside Anys.
	ErrUnrenderable = errors.New("decode: message has no protojson form")

	// ErrNotObject is returned by ToMap when the message's protojson form is not
	// a JSON object, as for google.protobuf.Timestamp (a string) or the wrapper
	// types (a scalar).
	ErrNotObject = errors.New("decode: protojson form is not an object")
)

var (
	// ErrTooComplex is returned when a message has more fields or deeper
	// nesting than the Decoder's limits (see [WithLimits]); it is not
	// unmarshalled at all.
	ErrTooComplex = errors.New("decode: message too complex to decode")

	// ErrAmbiguous is returned, wrapped in a [*DuplicateFieldError], when a
	// non-repeated field or two members of one oneof occur more than once in
	// a message: runtimes disagree on what such a message means.
	ErrAmbiguous = errors.New("decode: ambiguous encoding")
)

// Reasons a request is not decoded, as [Reason] names them for policies
// (input.request_undecoded_reason) and audit records. ReasonNoMessage is the
// proxy's: a call that ends without sending a message is decided once, with
// nothing to decode.
const (
	ReasonNoMessage     = "no_message"     // the call sent no message
	ReasonNoDescriptors = "no_descriptors" // no descriptors for the upstream, or they could not be fetched
	ReasonUnknownMethod = "unknown_method" // the descriptors have no such service or method
	ReasonUnparsable    = "unparsable"     // the bytes are not the method's input message
	ReasonUnrenderable  = "unrenderable"   // the message has no protojson form
	ReasonTooComplex    = "too_complex"    // over limits.max_decoded_nodes or limits.max_decode_depth
	ReasonAmbiguous     = "ambiguous"      // a duplicate non-repeated field, allowed by nothing
)

// Reason names why a decode failed, for err returned by a Decoder (nil: "").
// A resolver error other than an unknown name counts as no descriptors.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTooComplex):
		return ReasonTooComplex
	case errors.Is(err, ErrAmbiguous):
		return ReasonAmbiguous
	case errors.Is(err, ErrUnrenderable), errors.Is(err, ErrNotObject):
		return ReasonUnrenderable
	case errors.Is(err, ErrUndecodable):
		return ReasonUnparsable
	case errors.Is(err, ErrUnknownMethod), errors.Is(err, ErrUnknownService), errors.Is(err, ErrBadMethodName):
		return ReasonUnknownMethod
	default:
		return ReasonNoDescriptors
	}
}
