// Package decode turns the raw bytes of a gRPC request message into the JSON
// shape that protojson prints, so that Rego policies read requests the way
// grpcurl shows them: lowerCamelCase field names, bytes as base64, 64-bit
// integers as strings, enums by name, well-known types in their protojson form.
//
// The proxy forwards the original bytes untouched; decoding is a read-only side
// view for the policy. An unknown method, bytes that do not parse, a message
// that protojson could not print, or one over the Decoder's limits make
// [Decoder.Decode] report ok=false, [Reason] names why, and the policy decides
// what an undecodable request means (input.request_decoded=false).
//
// Before anything is unmarshalled, a walk over the wire bytes against the
// descriptors (into nested messages, groups, map entries, known extensions and
// the messages google.protobuf.Any values pack) counts every field occurrence
// and the nesting depth, and finds non-repeated fields that occur twice:
// [ErrTooComplex] and [ErrAmbiguous] (a [*DuplicateFieldError] naming the
// field's JSON path), unless the Decoder was built with
// [AllowDuplicateFields].
//
// Descriptors come from a [Resolver]: a FileDescriptorSet file loaded with
// [LoadProtoset], or the upstream's gRPC server reflection through
// [NewReflection], which caches per service, remembers failures for a short
// time, and shares one fetch between concurrent lookups of the same service.
//
// Guarantees:
//   - [ToMap] output, encoded with encoding/json, is the same JSON value as
//     protojson.Marshal with default options (proved by equivalence and fuzz
//     tests). Numbers are json.Number, never float64, so OPA does not have to
//     round-trip the input through JSON.
//   - Decoding never panics the caller and never mutates the request bytes.
//   - The work and memory of decoding one message are bounded by its size and
//     by the Decoder's node and depth limits ([WithLimits]): a message over
//     either is refused before it is parsed, without allocating per field.
//   - A decoded message has one reading: no non-repeated field and no oneof
//     occurs twice in it, at any depth (unless [AllowDuplicateFields]).
//   - Unknown fields are kept while parsing and ignored when rendering, as
//     protojson does.
package decode
