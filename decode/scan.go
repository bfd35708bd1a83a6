package decode

import (
	"errors"
	"fmt"
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
	maxNodes int
	maxDepth int
	allowDup bool

	nodes int
	// anyErr is the first Any whose packed message does not parse.
	anyErr error
}

// scan checks b as a message of type md. The error wraps ErrTooComplex,
// ErrAmbiguous (as a *DuplicateFieldError) or ErrUndecodable.
func (s *scanner) scan(md protoreflect.MessageDescriptor, b []byte) error {
	if err := s.message(md, b, 1); err != nil {
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

// count adds n nodes and fails when the total passes the limit.
func (s *scanner) count(n int) error {
	s.nodes += n
	if s.nodes > s.maxNodes {
		return s.tooComplex("more than %d fields (limits.max_decoded_nodes)", s.maxNodes)
	}
	return nil
}

func (s *scanner) message(md protoreflect.MessageDescriptor, b []byte, depth int) error {
	if depth > s.maxDepth {
		return s.tooComplex("messages nested more than %d deep (limits.max_decode_depth)", s.maxDepth)
	}
	fields, oneofs := md.Fields(), md.Oneofs()
	nf, no := fields.Len(), oneofs.Len()
	// One bit per field index, then one per oneof index; on the stack for
	// any message with at most 256 of them.
	var bits [4]uint64
	seen := bits[:]
	if words := (nf + no + 63) / 64; words > len(bits) {
		seen = make([]uint64, words)
	}
	isAny := md.FullName() == "google.protobuf.Any"
	var anyURL, anyValue []byte
	var extSeen []protowire.Number // non-repeated extensions met so far (rare)

	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return unparsable(md, protowire.ParseError(n))
		}
		start := off
		off += n
		if err := s.count(1); err != nil {
			return err
		}
		fd := fields.ByNumber(num)
		if fd == nil && md.ExtensionRanges().Has(num) {
			if xt, err := s.types.FindExtensionByNumber(md.FullName(), num); err == nil {
				fd = xt.TypeDescriptor()
			}
		}
		if fd == nil {
			// Unknown: kept as bytes by protobuf-go, walked only for its
			// path by DecodeUnknown; one node.
			n := protowire.ConsumeFieldValue(num, typ, b[off:])
			if n < 0 {
				return unparsable(md, protowire.ParseError(n))
			}
			off += n
			continue
		}
		if !fd.IsList() && !fd.IsMap() && !s.allowDup {
			// Any occurrence counts, whatever its wire type: a runtime that
			// keeps a mistyped one as unknown and one that refuses it still
			// disagree with one that reads it.
			var dup bool
			var oneof protoreflect.OneofDescriptor
			if fd.IsExtension() {
				for _, x := range extSeen {
					dup = dup || x == num
				}
				extSeen = append(extSeen, num)
			} else {
				i := fd.Index()
				w, bit := i/64, uint64(1)<<(i%64)
				dup = seen[w]&bit != 0
				seen[w] |= bit
				if od := fd.ContainingOneof(); od != nil && !dup {
					j := nf + od.Index()
					w, bit := j/64, uint64(1)<<(j%64)
					if seen[w]&bit != 0 {
						dup, oneof = true, od
					}
					seen[w] |= bit
				}
			}
			if dup {
				if n := protowire.ConsumeFieldValue(num, typ, b[off:]); n < 0 {
					return unparsable(md, protowire.ParseError(n))
				}
				e := &DuplicateFieldError{segs: []string{s.segment(md, fd, nil, 0)}}
				if oneof != nil {
					e.Oneof = string(oneof.Name())
				}
				return e
			}
		}
		n, err := s.field(fd, num, typ, b[off:], depth)
		if err != nil {
			if e, ok := err.(*DuplicateFieldError); ok {
				e.segs = append(e.segs, s.segment(md, fd, b[:start], num))
			}
			return err
		}
		if n < 0 {
			return unparsable(md, protowire.ParseError(n))
		}
		if isAny && typ == protowire.BytesType {
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
	if isAny && len(anyURL) > 0 {
		// Resolved as protojson and the renderer resolve it (the part after
		// the last '/'). An unresolvable type is left to the renderer, which
		// refuses it as unrenderable.
		if mt, err := s.types.FindMessageByURL(string(anyURL)); err == nil {
			if err := s.message(mt.Descriptor(), anyValue, depth+1); err != nil {
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
func (s *scanner) field(fd protoreflect.FieldDescriptor, num protowire.Number, typ protowire.Type, b []byte, depth int) (int, error) {
	switch {
	case fd.IsMap():
		if typ != protowire.BytesType {
			break // unknown to protobuf-go
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, nil
		}
		return n, s.message(fd.Message(), v, depth+1)
	case fd.Message() != nil && fd.Kind() == protoreflect.MessageKind:
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, nil
		}
		return n, s.message(fd.Message(), v, depth+1)
	case fd.Kind() == protoreflect.GroupKind:
		if typ != protowire.StartGroupType {
			break
		}
		v, n := protowire.ConsumeGroup(num, b)
		if n < 0 {
			return n, nil
		}
		return n, s.message(fd.Message(), v, depth+1)
	case fd.IsList() && typ == protowire.BytesType && isPacked(fd.Kind()):
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return n, nil
		}
		var elems int
		switch fixedSize(fd.Kind()) {
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
		return n, s.count(elems - min(elems, 1))
	}
	return protowire.ConsumeFieldValue(num, typ, b), nil
}

// segment names fd of md for an error path; a list element gets its index
// among the field's earlier occurrences in prev, the bytes of the message
// before it. A map entry's own fields add nothing: "labels.*" is the value.
func (s *scanner) segment(md protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor, prev []byte, num protowire.Number) string {
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

func isPacked(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind, protoreflect.GroupKind:
		return false
	}
	return true
}

func fixedSize(k protoreflect.Kind) int {
	switch k {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return 4
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return 8
	}
	return 0
}
