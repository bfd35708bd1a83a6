package decode

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// typeResolver is what protojson needs to expand google.protobuf.Any and what
// proto.Unmarshal needs to recognise extensions.
type typeResolver interface {
	protoregistry.ExtensionTypeResolver
	protoregistry.MessageTypeResolver
}

// ToMap renders m as [Decoder.Decode] renders requests, but as a Go value
// instead of bytes: objects are map[string]any, arrays []any, numbers
// json.Number (never float64), and NaN/Infinity the strings protojson uses.
//
// The shape is protojson's with two changes that make a policy see what the
// upstream will execute (see the package documentation): fields without
// presence are present at their default value, as with
// protojson.MarshalOptions{EmitDefaultValues: true}, and the "@type" of every
// google.protobuf.Any is the canonical URL of the type the upstream will
// decode, "type.googleapis.com/<full name>", whatever URL the caller wrote.
//
// Types inside google.protobuf.Any are resolved from protoregistry.GlobalTypes,
// as protojson does by default. ToMap returns an error wrapping
// [ErrUnrenderable] where protojson.Marshal would fail, and [ErrNotObject] when
// m is a well-known type whose protojson form is not an object.
func ToMap(m protoreflect.Message) (map[string]any, error) {
	return toMap(m, protoregistry.GlobalTypes, true)
}

// toMap is ToMap with a chosen Any resolver. checkRequired is false when the
// caller has just unmarshalled m without AllowPartial, which already proved
// that the required fields are present.
func toMap(m protoreflect.Message, types typeResolver, checkRequired bool) (map[string]any, error) {
	obj, _, err := render(m, types, checkRequired)
	return obj, err
}

// render is toMap that also reports whether the message may hide fields from
// its rendering (see renderer.mayHideFields).
func render(m protoreflect.Message, types typeResolver, checkRequired bool) (map[string]any, bool, error) {
	if m == nil {
		return map[string]any{}, false, nil // protojson prints a nil message as {}
	}
	if checkRequired {
		if err := proto.CheckInitialized(m.Interface()); err != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrUnrenderable, err)
		}
	}
	r := renderer{types: types}
	v, err := r.message(m)
	if err != nil {
		return nil, false, err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, false, fmt.Errorf("%w: %s", ErrNotObject, m.Descriptor().FullName())
	}
	return obj, r.mayHideFields, nil
}

// maxDepth bounds how deeply messages may nest, counted across the messages
// packed in google.protobuf.Any, which proto.Unmarshal parses one level at a
// time with a fresh limit each: without it, an Any inside an Any inside an Any
// a few hundred thousand times over (25 bytes a level) would grow the
// rendering goroutine's stack without bound. It is protobuf-go's own default
// recursion limit, which no real request comes near.
const maxDepth = protowire.DefaultRecursionLimit

// maxAnyBytes bounds the bytes unpacked from google.protobuf.Any values in one
// rendering. Each Any's value is parsed into a copy, and the copies of an Any
// inside an Any are alive together, so without a bound a few megabytes of
// nested Anys would cost the square of their size in copying and memory.
// Every byte of a request is unpacked once per Any around it: a 4 MiB request
// may nest its content 16 Anys deep.
const maxAnyBytes = 64 << 20

// renderer walks a message directly into Go values. It mirrors
// protojson's encoder (encoding/protojson/encode.go) case by case, because
// going through protojson bytes and back costs roughly three times as much
// on every request.
type renderer struct {
	types typeResolver
	// mayHideFields is set when the walk met unknown fields, which protojson
	// leaves out, or a well-known type other than Any, whose subtree protojson
	// renders and this walk does not enter: only then is the path-collecting
	// walk of DecodeUnknown worth running.
	mayHideFields bool
	// depth is the nesting depth of the message being rendered, the outermost
	// being 1.
	depth int
	// unpacked counts the bytes of Any values parsed so far.
	unpacked int
}

func (r *renderer) message(m protoreflect.Message) (any, error) {
	md := m.Descriptor()
	if isMessageSet(md) {
		return nil, fmt.Errorf("%w: %s is a proto1 MessageSet", ErrUnrenderable, md.FullName())
	}
	if r.depth >= maxDepth {
		return nil, fmt.Errorf("%w: %s: messages nested more than %d deep", ErrUnrenderable, md.FullName(), maxDepth)
	}
	r.depth++
	defer func() { r.depth-- }()
	if len(m.GetUnknown()) > 0 {
		r.mayHideFields = true
	}
	if hasSpecialJSON(md.FullName()) {
		if md.FullName() == anyName {
			return r.any(m)
		}
		// protojson renders the whole subtree (a Struct's values), so this
		// walk does not see inside it.
		r.mayHideFields = true
		return r.wellKnown(m)
	}
	fields := md.Fields()
	obj := make(map[string]any, fields.Len())
	// A field without presence (a proto3 scalar, enum, bytes or string that is
	// not optional, a list, a map) is rendered at its default value when
	// unset: the upstream cannot tell that value from "not sent", so neither
	// may the policy. A field with presence (a message, a proto3 optional or
	// proto2 field, a oneof member) is rendered only when set: the upstream
	// can tell, and so can the policy, by its absence.
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.HasPresence() && !m.Has(fd) {
			continue
		}
		x, err := r.value(fd, m.Get(fd))
		if err != nil {
			return nil, err
		}
		// JSONName is the lowerCamelCase (or json_name) name, exactly as
		// protojson writes it.
		obj[fd.JSONName()] = x
	}
	if md.ExtensionRanges().Len() > 0 {
		var err error
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if !fd.IsExtension() {
				return true
			}
			var x any
			if x, err = r.value(fd, v); err != nil {
				return false
			}
			obj[fd.JSONName()] = x // "[full.name]", as protojson writes extensions
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return obj, nil
}

func (r *renderer) value(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch {
	case fd.IsList():
		list := v.List()
		out := make([]any, list.Len())
		for i := range out {
			x, err := r.singular(fd, list.Get(i))
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case fd.IsMap():
		mp := v.Map()
		out := make(map[string]any, mp.Len())
		keyKind, valFd := fd.MapKey().Kind(), fd.MapValue()
		var err error
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			var key string
			if key, err = mapKey(fd, keyKind, k); err != nil {
				return false
			}
			var x any
			if x, err = r.singular(valFd, v); err != nil {
				return false
			}
			out[key] = x
			return true
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	default:
		return r.singular(fd, v)
	}
}

func mapKey(fd protoreflect.FieldDescriptor, kind protoreflect.Kind, k protoreflect.MapKey) (string, error) {
	switch kind {
	case protoreflect.StringKind:
		s := k.String()
		if !utf8.ValidString(s) {
			return "", fmt.Errorf("%w: invalid UTF-8 in a key of %s", ErrUnrenderable, fd.FullName())
		}
		return s, nil
	case protoreflect.BoolKind:
		return strconv.FormatBool(k.Bool()), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(k.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.FormatUint(k.Uint(), 10), nil
	default:
		return "", fmt.Errorf("%w: %s has map key kind %v", ErrUnrenderable, fd.FullName(), kind)
	}
}

func (r *renderer) singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch kind := fd.Kind(); kind {
	case protoreflect.BoolKind:
		return v.Bool(), nil
	case protoreflect.StringKind:
		s := v.String()
		// proto2 strings are not validated on the wire, but protojson refuses
		// to print them, and so do we: a policy must not see a string that
		// differs from what the upstream receives.
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("%w: invalid UTF-8 in %s", ErrUnrenderable, fd.FullName())
		}
		return s, nil
	// Zeros, the most common numbers now that defaults are rendered, are
	// constants: converting a constant to any does not allocate, converting
	// strconv's result does.
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		if v.Int() == 0 {
			return json.Number("0"), nil
		}
		return json.Number(strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		if v.Uint() == 0 {
			return json.Number("0"), nil
		}
		return json.Number(strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if v.Int() == 0 {
			return "0", nil
		}
		return strconv.FormatInt(v.Int(), 10), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if v.Uint() == 0 {
			return "0", nil
		}
		return strconv.FormatUint(v.Uint(), 10), nil
	case protoreflect.FloatKind:
		return formatFloat(v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return formatFloat(v.Float(), 64), nil
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.FullName() == "google.protobuf.NullValue" {
			return nil, nil
		}
		if ev := ed.Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name()), nil
		}
		return json.Number(strconv.FormatInt(int64(v.Enum()), 10)), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return r.message(v.Message())
	default:
		return nil, fmt.Errorf("%w: %s has unknown kind %v", ErrUnrenderable, fd.FullName(), kind)
	}
}

// formatFloat reproduces protojson's number formatting (which follows
// encoding/json): shortest representation for the bit size, exponent form
// outside [1e-6, 1e21), a two-digit minimum exponent trimmed to one, and the
// strings "NaN", "Infinity", "-Infinity" for values JSON cannot express.
func formatFloat(f float64, bitSize int) any {
	switch {
	case f == 0 && !math.Signbit(f):
		return json.Number("0")
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, format, -1, bitSize)
	if format == 'e' {
		// "1e-07" → "1e-7", as encoding/json and protojson print it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return json.Number(b)
}

// hasSpecialJSON reports whether protojson gives the message type its own JSON
// mapping. google.protobuf.Empty is deliberately absent: the JSON spec maps it
// like any other message, to {}.
func hasSpecialJSON(name protoreflect.FullName) bool {
	if name.Parent() != "google.protobuf" {
		return false
	}
	switch name.Name() {
	case "Any", "Timestamp", "Duration", "Struct", "ListValue", "Value", "FieldMask",
		"BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value",
		"FloatValue", "DoubleValue", "StringValue", "BytesValue":
		return true
	}
	return false
}

// wellKnown renders a well-known type other than Any through protojson
// itself. These types carry validation rules (timestamp range, duration sign,
// field-mask naming) that are easy to get subtly wrong and are rare in admin
// requests, so exactness is worth more here than speed. None of them has a
// field that EmitDefaultValues would change, nor can one hold an Any.
func (r *renderer) wellKnown(m protoreflect.Message) (any, error) {
	b, err := protojson.MarshalOptions{AllowPartial: true, Resolver: r.types}.Marshal(m.Interface())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnrenderable, m.Descriptor().FullName(), err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnrenderable, m.Descriptor().FullName(), err)
	}
	return v, nil
}

const (
	anyName = protoreflect.FullName("google.protobuf.Any")
	// typeURLPrefix is the prefix of the canonical type URL, which
	// anypb.New, protoc and every official runtime write.
	typeURLPrefix = "type.googleapis.com/"
)

// any renders a google.protobuf.Any as protojson does, with its packed
// message walked by this renderer (so defaults, unknown fields and nested
// Anys are treated as everywhere else), except for "@type".
//
// The type URL is the caller's choice, while upstreams (protobuf-go's
// resolvers, hence gobgpd; the C++, Java and Python runtimes alike) decode
// the type named after its last '/', whatever comes before. A policy
// comparing "@type" with the canonical URL would let
// "evil.example/apipb.IPAddressPrefix" through, so "@type" is rendered as
// typeURLPrefix + the full name of the type that was resolved the same way.
// A URL that names no type this decoder knows (including one ending in '/')
// is not rendered at all, as protojson refuses it.
func (r *renderer) any(m protoreflect.Message) (any, error) {
	fields := m.Descriptor().Fields()
	urlField, valueField := fields.ByNumber(1), fields.ByNumber(2)
	if urlField == nil || valueField == nil || urlField.Kind() != protoreflect.StringKind || valueField.Kind() != protoreflect.BytesKind {
		return nil, fmt.Errorf("%w: %s does not have the fields of google.protobuf.Any", ErrUnrenderable, anyName)
	}
	if !m.Has(urlField) {
		if !m.Has(valueField) {
			return map[string]any{}, nil // an empty Any: protojson prints {}
		}
		return nil, fmt.Errorf("%w: %s: type_url is not set", ErrUnrenderable, anyName)
	}
	url := m.Get(urlField).String()
	mt, err := r.types.FindMessageByURL(url)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: unable to resolve %q: %w", ErrUnrenderable, anyName, url, err)
	}
	value := m.Get(valueField).Bytes()
	if r.unpacked += len(value); r.unpacked > maxAnyBytes {
		return nil, fmt.Errorf("%w: %s: more than %d bytes unpacked from Anys inside Anys", ErrUnrenderable, anyName, maxAnyBytes)
	}
	inner := mt.New()
	// AllowPartial as protojson: required fields inside an Any are never
	// checked. The recursion limit carries the depth already reached (at
	// least 1: zero would mean the default).
	opts := proto.UnmarshalOptions{AllowPartial: true, Resolver: r.types, RecursionLimit: max(maxDepth-r.depth, 1)}
	if err := opts.Unmarshal(value, inner.Interface()); err != nil {
		return nil, fmt.Errorf("%w: %s: unable to unmarshal %q: %w", ErrUnrenderable, anyName, url, err)
	}
	typeURL := typeURLPrefix + string(mt.Descriptor().FullName())
	v, err := r.message(inner)
	if err != nil {
		return nil, err
	}
	if hasSpecialJSON(mt.Descriptor().FullName()) {
		// A well-known type (an Any too) goes under "value" in its own form.
		return map[string]any{"@type": typeURL, "value": v}, nil
	}
	obj := v.(map[string]any) // an ordinary message renders as an object
	obj["@type"] = typeURL
	return obj, nil
}

// isMessageSet reports whether md uses the proto1 MessageSet wire format,
// which protojson refuses to print. The descriptors built by protodesc expose
// this through an unexported-interface method, as protojson itself checks.
func isMessageSet(md protoreflect.MessageDescriptor) bool {
	x, ok := md.(interface{ IsMessageSet() bool })
	return ok && x.IsMessageSet()
}
