package decode

import (
	"context"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Reshape brings a request rendered by an earlier version of this package to
// today's shape, for replaying audit records written before zero values were
// rendered: at every depth the method's input descriptor describes, it adds
// each field without presence that req lacks, at its default, and makes the
// "@type" of each Any canonical where it resolves. It changes req in place and
// returns how many values it added or rewrote (0 for a request rendered by
// this version). A value without the shape the descriptor expects, such as
// "[redacted]" where a message was, is left as it is; a request Reshape cannot
// complete is no worse than before. The error is the method lookup's.
func (p *Protoset) Reshape(fullMethod string, req map[string]any) (int, error) {
	md, err := p.FindMethod(context.Background(), fullMethod)
	if err != nil {
		return 0, err
	}
	s := reshaper{types: withGlobalMessages{p.types()}}
	s.message(md.Input(), req, 0)
	return s.changed, nil
}

type reshaper struct {
	types   typeResolver
	changed int
}

func (s *reshaper) message(md protoreflect.MessageDescriptor, obj map[string]any, depth int) {
	if depth >= maxDepth {
		return
	}
	if hasSpecialJSON(md.FullName()) {
		if md.FullName() == anyName {
			s.any(obj, depth)
		}
		return // the other well-known types have no fields in their JSON form
	}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		v, has := obj[fd.JSONName()]
		if !has {
			if !fd.HasPresence() {
				obj[fd.JSONName()] = defaultJSON(fd)
				s.changed++
			}
			continue
		}
		s.value(fd, v, depth)
	}
	if md.ExtensionRanges().Len() == 0 {
		return
	}
	for k, v := range obj {
		name, ok := strings.CutPrefix(k, "[")
		if !ok {
			continue
		}
		if name, ok = strings.CutSuffix(name, "]"); !ok {
			continue
		}
		xt, err := s.types.FindExtensionByName(protoreflect.FullName(name))
		if err != nil || xt.TypeDescriptor().ContainingMessage().FullName() != md.FullName() {
			continue
		}
		s.value(xt.TypeDescriptor(), v, depth)
	}
}

// value reshapes the messages inside a field's value.
func (s *reshaper) value(fd protoreflect.FieldDescriptor, v any, depth int) {
	switch {
	case fd.IsMap():
		if vd := fd.MapValue().Message(); vd != nil {
			m, _ := v.(map[string]any)
			for _, e := range m {
				if o, ok := e.(map[string]any); ok {
					s.message(vd, o, depth+1)
				}
			}
		}
	case fd.IsList():
		if ed := fd.Message(); ed != nil {
			l, _ := v.([]any)
			for _, e := range l {
				if o, ok := e.(map[string]any); ok {
					s.message(ed, o, depth+1)
				}
			}
		}
	case fd.Message() != nil:
		if o, ok := v.(map[string]any); ok {
			s.message(fd.Message(), o, depth+1)
		}
	}
}

// any reshapes an Any's JSON form: the packed message's fields inline, or
// under "value" for a well-known type.
func (s *reshaper) any(obj map[string]any, depth int) {
	url, ok := obj["@type"].(string)
	if !ok {
		return
	}
	mt, err := s.types.FindMessageByURL(url)
	if err != nil {
		return
	}
	inner := mt.Descriptor()
	if canonical := typeURLPrefix + string(inner.FullName()); url != canonical {
		obj["@type"] = canonical
		s.changed++
	}
	if !hasSpecialJSON(inner.FullName()) {
		s.message(inner, obj, depth+1)
		return
	}
	if v, ok := obj["value"].(map[string]any); ok {
		s.message(inner, v, depth+1) // only an Any's form is an object with fields
	}
}

// defaultJSON is the rendering of an unset field without presence.
func defaultJSON(fd protoreflect.FieldDescriptor) any {
	switch {
	case fd.IsList():
		return []any{}
	case fd.IsMap():
		return map[string]any{}
	}
	// A default scalar always renders: it is valid UTF-8, a known kind.
	v, _ := (&renderer{}).singular(fd, fd.Default())
	return v
}
