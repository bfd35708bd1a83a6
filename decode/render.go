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

// ToMap renders m as protojson.Marshal with default options would print it,
// but as a Go value instead of bytes: objects are map[string]any, arrays []any,
// numbers json.Number (never float64), and NaN/Infinity the strings protojson
// uses. Encoding the result with encoding/json gives the same JSON value as
// protojson.Marshal(m).
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

// renderer walks a message directly into Go values. It mirrors
// protojson's encoder (encoding/protojson/encode.go) case by case, because
// going through protojson bytes and back costs roughly three times as much
// on every request.
type renderer struct {
	types typeResolver
	// mayHideFields is set when the walk met unknown fields, which protojson
	// leaves out, or a well-known type, whose subtree protojson renders and this
	// walk does not enter: only then is the path-collecting walk of
	// DecodeUnknown worth running.
	mayHideFields bool
}

func (r *renderer) message(m protoreflect.Message) (any, error) {
	md := m.Descriptor()
	if isMessageSet(md) {
		return nil, fmt.Errorf("%w: %s is a proto1 MessageSet", ErrUnrenderable, md.FullName())
	}
	if len(m.GetUnknown()) > 0 {
		r.mayHideFields = true
	}
	if hasSpecialJSON(md.FullName()) {
		// protojson renders the whole subtree (an Any's packed message, a
		// Struct's values), so this walk does not see inside it.
		r.mayHideFields = true
		return r.wellKnown(m)
	}
	obj := make(map[string]any)
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		var x any
		if x, err = r.value(fd, v); err != nil {
			return false
		}
		// JSONName is the lowerCamelCase (or json_name) name, and
		// "[full.name]" for extensions, exactly as protojson writes them.
		obj[fd.JSONName()] = x
		return true
	})
	if err != nil {
		return nil, err
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
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return json.Number(strconv.FormatInt(v.Int(), 10)), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return json.Number(strconv.FormatUint(v.Uint(), 10)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
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

// wellKnown renders a well-known type through protojson itself. These types
// carry validation rules (timestamp range, duration sign, field-mask naming,
// Any resolution) that are easy to get subtly wrong and are rare in admin
// requests, so exactness is worth more here than speed.
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

// isMessageSet reports whether md uses the proto1 MessageSet wire format,
// which protojson refuses to print. The descriptors built by protodesc expose
// this through an unexported-interface method, as protojson itself checks.
func isMessageSet(md protoreflect.MessageDescriptor) bool {
	x, ok := md.(interface{ IsMessageSet() bool })
	return ok && x.IsMessageSet()
}
