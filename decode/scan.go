package decode

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Default bounds of the pre-scan (see [WithLimits]). A realistic admin
// request is far below both: the largest Txn etcd accepts at its default
// --max-txn-ops (128) has 2,560 nodes at depth 3. A decoded node costs the
// proxy about 1.1 KiB (README, "Limits against abusive clients"), so the
// node default bounds one message's decoding to about 11 MiB.
const (
	DefaultMaxNodes = 10000
	DefaultMaxDepth = 64
	// MaxDepthCeiling is protobuf-go's own recursion limit: a deeper message
	// does not parse anyway.
	MaxDepthCeiling = protowire.DefaultRecursionLimit
)

// scanner walks the wire bytes of a message against its descriptor before
// anything is unmarshalled. It allocates nothing on the accepting path of
// messages with at most 256 fields and oneofs, and no extensions; the error
// paths build the field path.
//
// It enforces the two properties that make a decoded request safe to judge:
//   - its cost is bounded: at most maxNodes field occurrences (each element
//     of a packed list and each map entry counting as one), and at most
//     maxDepth nested messages;
//   - it has one reading: no non-repeated field, and no two members of one
//     oneof, occur twice in one message. protobuf-go merges a repeated
//     message field and keeps the last scalar, gogo-generated code (etcd)
//     replaces messages, other runtimes keep the first: the policy must not
//     judge a message the upstream reads differently.
type scanner struct {
	types    typeResolver
	plans    map[protoreflect.MessageDescriptor]*plan // the method's, read-only
	maxNodes int
	maxDepth int
	allowDup bool
	extra    map[protoreflect.MessageDescriptor]*plan // built during this walk

	nodes int
	// anyErr is the first Any whose packed message does not parse.
	anyErr error
}

// scan checks b as a message of type md. The error wraps ErrTooComplex,
// ErrAmbiguous (as a *DuplicateFieldError) or ErrUndecodable.
func (s *scanner) scan(md protoreflect.MessageDescriptor, b []byte) error {
	if err := s.message(s.plan(md), b, 1); err != nil {
		return err
	}
	return s.anyErr
}

// DuplicateFieldError reports a non-repeated field, or a second member of a
// oneof, that occurs more than once in a message. It wraps [ErrAmbiguous].
type DuplicateFieldError struct {
	// Path is the field's path of JSON names from the request's root:
	// "success[0].requestRange.countOnly"; map values are "labels.*", a
	// message packed in an Any continues the Any's path, as protojson prints
	// it inline.
	Path string
	// Oneof names the oneof when the occurrences are two different members
	// of it ("" otherwise); Path then names the second member.
	Oneof string

	segs []string // reversed path segments while the error unwinds
}

func (e *DuplicateFieldError) Error() string {
	if e.Oneof != "" {
		return fmt.Sprintf("%v: %s: a second member of oneof %s", ErrAmbiguous, e.Path, e.Oneof)
	}
	return fmt.Sprintf("%v: field %s occurs more than once", ErrAmbiguous, e.Path)
}

func (e *DuplicateFieldError) Unwrap() error { return ErrAmbiguous }

// finish joins the collected segments into Path.
func (e *DuplicateFieldError) finish() {
	var sb strings.Builder
	for i := len(e.segs) - 1; i >= 0; i-- {
		seg := e.segs[i]
		if seg == "" {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.WriteString(seg)
	}
	e.Path, e.segs = sb.String(), nil
}

func (s *scanner) tooComplex(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrTooComplex}, args...)...)
}

func unparsable(md protoreflect.MessageDescriptor, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUndecodable, md.FullName(), err)
}

func (s *scanner) message(pl *plan, b []byte, depth int) error {
	if depth > s.maxDepth {
		return s.tooComplex("messages nested more than %d deep (limits.max_decode_depth)", s.maxDepth)
	}
	// Every message is rendered with its fields without presence at their
	// defaults: an empty sub-message of ten such fields is two bytes on the
	// wire and ten values in the policy input.
	if s.nodes += pl.defaults; s.nodes > s.maxNodes {
		return s.tooComplex("more than %d fields (limits.max_decoded_nodes)", s.maxNodes)
	}
	// One bit per non-repeated field, then one per oneof; on the stack for
	// any message with at most 256 of them.
	var bits [4]uint64
	seen := bits[:]
	if pl.words > len(bits) {
		seen = make([]uint64, pl.words)
	}
	var anyURL, anyValue []byte
	mapValue := false              // a map entry's value, read as the message it is
	var extSeen []protowire.Number // non-repeated extensions met so far (rare)

	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return unparsable(pl.md, protowire.ParseError(n))
		}
		start := off
		off += n
		if s.nodes++; s.nodes > s.maxNodes {
			return s.tooComplex("more than %d fields (limits.max_decoded_nodes)", s.maxNodes)
		}
		f := pl.field(num)
		if f == nil && pl.extensible && pl.md.ExtensionRanges().Has(num) {
			if xt, err := s.types.FindExtensionByNumber(pl.md.FullName(), num); err == nil {
				f = s.extension(xt.TypeDescriptor())
			}
		}
		if f == nil {
			// Unknown: kept as bytes by protobuf-go, walked only for its
			// path by DecodeUnknown; one node.
			n := protowire.ConsumeFieldValue(num, typ, b[off:])
			if n < 0 {
				return unparsable(pl.md, protowire.ParseError(n))
			}
			off += n
			continue
		}
		if f.single && !s.allowDup {
			// Any occurrence counts, whatever its wire type: a runtime that
			// keeps a mistyped one as unknown and one that refuses it still
			// disagree with one that reads it.
			dup, oneof := false, false
			if f.bit < 0 { // an extension
				dup = slices.Contains(extSeen, num)
				extSeen = append(extSeen, num)
			} else {
				w, bit := f.bit/64, uint64(1)<<(f.bit%64)
				dup = seen[w]&bit != 0
				seen[w] |= bit
				if f.oneofBit >= 0 && !dup {
					w, bit := f.oneofBit/64, uint64(1)<<(f.oneofBit%64)
					dup, oneof = seen[w]&bit != 0, true
					seen[w] |= bit
				}
			}
			if dup {
				if n := protowire.ConsumeFieldValue(num, typ, b[off:]); n < 0 {
					return unparsable(pl.md, protowire.ParseError(n))
				}
				e := &DuplicateFieldError{segs: []string{segment(pl.md, f.fd, nil, 0)}}
				if oneof {
					e.Oneof = string(f.fd.ContainingOneof().Name())
				}
				return e
			}
		}
		n, err := s.field(f, num, typ, b[off:], depth)
		if err != nil {
			if e, ok := err.(*DuplicateFieldError); ok {
				e.segs = append(e.segs, segment(pl.md, f.fd, b[:start], num))
			}
			return err
		}
		if n < 0 {
			return unparsable(pl.md, protowire.ParseError(n))
		}
		if num == 2 && typ == protowire.BytesType && pl.md.IsMapEntry() {
			mapValue = true
		}
		if pl.isAny && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[off:])
			switch num {
			case 1:
				anyURL = v
			case 2:
				anyValue = v
			}
		}
		off += n
	}
	if !mapValue && pl.md.IsMapEntry() {
		// An entry without its value holds the value's default: an empty
		// message, rendered with its defaults however many entries omit it.
		if f := pl.field(2); f != nil && f.sub != nil {
			if err := s.message(f.sub, nil, depth+1); err != nil {
				return err
			}
		}
	}
	if pl.isAny && len(anyURL) > 0 {
		// Resolved as protojson and the renderer resolve it (the part after
		// the last '/'). An unresolvable type is left to the renderer, which
		// refuses it as unrenderable.
		if mt, err := s.types.FindMessageByURL(string(anyURL)); err == nil {
			if err := s.message(s.plan(mt.Descriptor()), anyValue, depth+1); err != nil {
				if !errors.Is(err, ErrUndecodable) {
					return err
				}
				// The Any parses, only its content does not: protojson
				// refuses to render it, unless the bytes around it do not
				// parse either, which the rest of the walk finds first.
				if s.anyErr == nil {
					s.anyErr = fmt.Errorf("%w: %w", ErrUnrenderable, err)
				}
			}
		}
	}
	return nil
}

// field walks one field value (after its tag) and returns its length.
func (s *scanner) field(f *fieldPlan, num protowire.Number, typ protowire.Type, b []byte, depth int) (int, error) {
	switch f.shape {
	case shapeMessage:
		if typ != protowire.BytesType {
			break // unknown to protobuf-go
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, nil
		}
		return n, s.message(f.sub, v, depth+1)
	case shapeGroup:
		if typ != protowire.StartGroupType {
			break
		}
		v, n := protowire.ConsumeGroup(num, b)
		if n < 0 {
			return n, nil
		}
		return n, s.message(f.sub, v, depth+1)
	case shapePackable:
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, nil
		}
		var elems int
		switch f.fixed {
		case 4:
			elems = len(v) / 4
		case 8:
			elems = len(v) / 8
		default:
			for _, c := range v {
				if c < 0x80 {
					elems++
				}
			}
		}
		// The list's own tag was counted already.
		if s.nodes += elems - min(elems, 1); s.nodes > s.maxNodes {
			return n, s.tooComplex("more than %d fields (limits.max_decoded_nodes)", s.maxNodes)
		}
		return n, nil
	}
	return protowire.ConsumeFieldValue(num, typ, b), nil
}

// plan returns the plan of md: the method's, or one built now for a type
// only an Any or an extension names (kept for the rest of the walk).
func (s *scanner) plan(md protoreflect.MessageDescriptor) *plan {
	if pl := s.plans[md]; pl != nil {
		return pl
	}
	if s.extra == nil {
		s.extra = make(map[protoreflect.MessageDescriptor]*plan)
	}
	return buildPlan(md, s.extra)
}

// extension returns the plan of an extension field.
func (s *scanner) extension(fd protoreflect.FieldDescriptor) *fieldPlan {
	f := &fieldPlan{}
	f.init(fd, -1, -1)
	if sub := fd.Message(); sub != nil {
		f.sub = s.plan(sub)
	}
	return f
}

// segment names fd of md for an error path; a list element gets its index
// among the field's earlier occurrences in prev, the bytes of the message
// before it. A map entry's own fields add nothing: "labels.*" is the value.
func segment(md protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor, prev []byte, num protowire.Number) string {
	name := fd.JSONName()
	switch {
	case md.IsMapEntry():
		return ""
	case fd.IsMap():
		return name + ".*"
	case fd.IsList():
		i := 0
		for len(prev) > 0 {
			n, typ, m := protowire.ConsumeTag(prev)
			if m < 0 {
				break
			}
			k := protowire.ConsumeFieldValue(n, typ, prev[m:])
			if k < 0 {
				break
			}
			if n == num {
				i++
			}
			prev = prev[m+k:]
		}
		return name + "[" + strconv.Itoa(i) + "]"
	}
	return name
}
