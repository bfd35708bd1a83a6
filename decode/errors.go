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
