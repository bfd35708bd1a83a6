// Package decode turns the raw bytes of a gRPC request message into the JSON
// shape that protojson prints, so that Rego policies read requests the way
// grpcurl shows them: lowerCamelCase field names, bytes as base64, 64-bit
// integers as strings, enums by name, well-known types in their protojson form.
// Two things differ from protojson's defaults, so that a policy sees what the
// upstream will execute rather than how the caller spelled it:
//
//   - Zero values are present. A field without presence (a proto3 scalar,
//     enum, string or bytes field that is not optional, a list, a map) is
//     rendered at its default when unset: 0, false, "", the enum's zero value
//     by name, [] and {}, at every depth, inside google.protobuf.Any too. The
//     upstream cannot tell such a field left out from one set to zero, so a
//     rule `input.request.prefixLen == 0` must not be undefined. A field with
//     presence (a message, a proto3 optional field, a oneof member, a proto2
//     field) is present exactly when it was set: the upstream can tell, and
//     acts on it. A proto2 field's declared default is therefore not rendered
//     when the field is unset; a policy that means "the effective value"
//     writes object.get(input.request, "name", <declared default>).
//   - The "@type" of a google.protobuf.Any is "type.googleapis.com/" and the
//     full name of the type the upstream will decode: the runtimes (protobuf-go,
//     hence gobgpd; C++, Java, Python) resolve the name after the last '/' and
//     ignore what comes before, so the caller's URL says nothing else. A URL
//     that names no type the descriptors know, also one ending in '/', makes
//     the message undecodable.
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
//     protojson.MarshalOptions{EmitDefaultValues: true}.Marshal of the message
//     after the type URL of every Any in it (at any depth, Anys inside Anys
//     repacked) is replaced by "type.googleapis.com/<full name it resolves
//     to>"; and either both succeed or both fail (proved by equivalence and
//     fuzz tests). The one exception is a message that protojson would print
//     but that nests more than 10,000 messages deep counted across Anys, or
//     unpacks more than 64 MiB from Anys inside Anys: it is refused, so that
//     nested Anys cannot cost memory and time in the square of their size.
//     Numbers are json.Number, never float64, so OPA does not have to
//     round-trip the input through JSON.
//   - Decoding never panics the caller and never mutates the request bytes.
//   - The work and memory of decoding one message are bounded by its size and
//     by the Decoder's node and depth limits ([WithLimits]): a message over
//     either is refused before it is parsed, without allocating per field.
//   - A decoded message has one reading: no non-repeated field and no oneof
//     occurs twice in it, at any depth (unless [AllowDuplicateFields]).
//   - Unknown fields are kept while parsing and ignored when rendering, as
//     protojson does; [Decoder.DecodeUnknown] says where they were, inside
//     Anys too.
package decode
