package decode

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// plan is what the pre-scan needs of one message type, worked out once per
// method so that the walk makes no descriptor lookups per field. Plans are
// immutable once built and shared by concurrent walks.
type plan struct {
	md         protoreflect.MessageDescriptor
	dense      []fieldPlan                     // by field number, up to maxDense; shape 0: not a field
	sparse     map[protowire.Number]*fieldPlan // numbers above maxDense
	words      int                             // bitset words for non-repeated fields and oneofs
	isAny      bool
	extensible bool
}

// maxDense bounds the field numbers a plan indexes directly.
const maxDense = 256

type shape uint8

const (
	shapeNone     shape = iota
	shapeScalar         // also strings, bytes and repeated ones that cannot be packed
	shapeMessage        // message fields and map entries
	shapeGroup          // proto2 groups
	shapePackable       // repeated numeric fields, packed or not
)

type fieldPlan struct {
	fd       protoreflect.FieldDescriptor
	shape    shape
	single   bool  // neither a list nor a map: may occur once
	fixed    uint8 // packed element size; 0 for varints
	bit      int   // seen bit of a non-repeated field; -1 for extensions
	oneofBit int   // seen bit of its oneof; -1 when in none
	sub      *plan // message, group or map entry
}

func (f *fieldPlan) init(fd protoreflect.FieldDescriptor, bit, oneofBit int) {
	f.fd, f.bit, f.oneofBit = fd, bit, oneofBit
	f.single = !fd.IsList() && !fd.IsMap()
	switch k := fd.Kind(); {
	case fd.IsMap() || k == protoreflect.MessageKind:
		f.shape = shapeMessage
	case k == protoreflect.GroupKind:
		f.shape = shapeGroup
	case fd.IsList() && k != protoreflect.StringKind && k != protoreflect.BytesKind:
		f.shape = shapePackable
		switch k {
		case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
			f.fixed = 4
		case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
			f.fixed = 8
		}
	default:
		f.shape = shapeScalar
	}
}

func (pl *plan) field(num protowire.Number) *fieldPlan {
	if int(num) < len(pl.dense) {
		if f := &pl.dense[num]; f.shape != shapeNone {
			return f
		}
		return nil
	}
	return pl.sparse[num]
}

// buildPlan returns md's plan and those of every message reachable from it,
// recorded in plans.
func buildPlan(md protoreflect.MessageDescriptor, plans map[protoreflect.MessageDescriptor]*plan) *plan {
	if pl := plans[md]; pl != nil {
		return pl
	}
	fields, oneofs := md.Fields(), md.Oneofs()
	pl := &plan{
		md:         md,
		isAny:      md.FullName() == "google.protobuf.Any",
		extensible: md.ExtensionRanges().Len() > 0,
	}
	plans[md] = pl
	top := 0
	for i := range fields.Len() {
		top = max(top, int(fields.Get(i).Number()))
	}
	pl.dense = make([]fieldPlan, min(top, maxDense)+1)
	bits := 0
	oneofBit := make([]int, oneofs.Len())
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !fd.IsList() && !fd.IsMap() {
			bits++
		}
	}
	for i := range oneofBit {
		oneofBit[i] = bits + i
	}
	pl.words = (bits + len(oneofBit) + 63) / 64
	bit := 0
	for i := range fields.Len() {
		fd := fields.Get(i)
		f := &fieldPlan{}
		if n := int(fd.Number()); n < len(pl.dense) {
			f = &pl.dense[n]
		} else {
			if pl.sparse == nil {
				pl.sparse = make(map[protowire.Number]*fieldPlan)
			}
			pl.sparse[fd.Number()] = f
		}
		b, ob := -1, -1
		if !fd.IsList() && !fd.IsMap() {
			b = bit
			bit++
		}
		if od := fd.ContainingOneof(); od != nil {
			ob = oneofBit[od.Index()]
		}
		f.init(fd, b, ob)
		if sub := fd.Message(); sub != nil {
			f.sub = buildPlan(sub, plans)
		}
	}
	return pl
}
