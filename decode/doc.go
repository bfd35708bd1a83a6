// Package decode turns the raw bytes of a gRPC request message into the JSON
// shape that protojson prints, so that Rego policies read requests the way
// grpcurl shows them: lowerCamelCase field names, bytes as base64, 64-bit
// integers as strings, enums by name, well-known types in their protojson form.
//
// The proxy forwards the original bytes untouched; decoding is a read-only side
// view for the policy. It therefore never fails a call by itself: an unknown
// method, bytes that do not parse, or a message that protojson could not print
// make [Decoder.Decode] report ok=false, and the policy decides what an
// undecodable request means (DESIGN.md: input.request_decoded=false).
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
//   - Unknown fields are kept while parsing and ignored when rendering, as
//     protojson does.
package decode
