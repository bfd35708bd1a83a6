package decode

import (
	"context"
	"fmt"
	"os"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Protoset is a [Resolver] over a FileDescriptorSet file, as written by
// `protoc --include_imports --descriptor_set_out=FILE`. It is immutable after
// loading and safe for concurrent use.
type Protoset struct {
	path    string
	files   *protoregistry.Files
	all     *dynamicpb.Types
	methods map[string]protoreflect.MethodDescriptor // by "/pkg.Service/Method"
}

// LoadProtoset reads and links the FileDescriptorSet at path. Every error
// names the file: a missing or unreadable file wraps the os error, anything
// that is not a complete, linkable descriptor set wraps [ErrInvalidProtoset].
func LoadProtoset(path string) (*Protoset, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("decode: protoset %s: %w", path, err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w %s: not a FileDescriptorSet: %w", ErrInvalidProtoset, path, err)
	}
	if len(set.GetFile()) == 0 {
		return nil, fmt.Errorf("%w %s: contains no files", ErrInvalidProtoset, path)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w (was it built with protoc --include_imports?)", ErrInvalidProtoset, path, err)
	}
	p := &Protoset{
		path:    path,
		files:   files,
		all:     dynamicpb.NewTypes(files),
		methods: make(map[string]protoreflect.MethodDescriptor),
	}
	files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		services := f.Services()
		for i := range services.Len() {
			sd := services.Get(i)
			methods := sd.Methods()
			for j := range methods.Len() {
				md := methods.Get(j)
				p.methods["/"+string(sd.FullName())+"/"+string(md.Name())] = md
			}
		}
		return true
	})
	return p, nil
}

// FindMethod implements [Resolver]. Lookups are a map access; ctx is unused.
func (p *Protoset) FindMethod(_ context.Context, fullMethod string) (protoreflect.MethodDescriptor, error) {
	if md, ok := p.methods[fullMethod]; ok {
		return md, nil
	}
	service, name, err := splitMethod(fullMethod)
	if err != nil {
		return nil, err
	}
	if d, err := p.files.FindDescriptorByName(service); err != nil || !isService(d) {
		return nil, fmt.Errorf("%w %s in protoset %s", ErrUnknownService, service, p.path)
	}
	return nil, fmt.Errorf("%w %s in service %s of protoset %s", ErrUnknownMethod, name, service, p.path)
}

// Methods returns every full method name the protoset defines, sorted; useful
// to check a route's service globs against the descriptors at start-up.
func (p *Protoset) Methods() []string {
	out := make([]string, 0, len(p.methods))
	for name := range p.methods {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func (p *Protoset) types() *dynamicpb.Types { return p.all }

// FieldNames lists the names a request's keys can have: json holds every
// field's JSON (lowerCamelCase) name, the name requests are rendered with;
// renamed maps each field's protobuf name that differs from its JSON name to
// the message field it names ("fleet.v1.User.new_password" → "newPassword").
func (p *Protoset) FieldNames() (json map[string]bool, renamed map[string]FieldName) {
	json, renamed = map[string]bool{}, map[string]FieldName{}
	var walk func(ms protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			md := ms.Get(i)
			fields := md.Fields()
			for j := range fields.Len() {
				fd := fields.Get(j)
				json[fd.JSONName()] = true
				if string(fd.Name()) != fd.JSONName() {
					renamed[string(fd.Name())] = FieldName{Field: string(fd.FullName()), JSON: fd.JSONName()}
				}
			}
			walk(md.Messages())
		}
	}
	p.files.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		walk(f.Messages())
		return true
	})
	return json, renamed
}

// FieldName is a protobuf field and the JSON name requests show it under.
type FieldName struct {
	Field string // full name, "fleet.v1.User.new_password"
	JSON  string // "newPassword"
}

func isService(d protoreflect.Descriptor) bool {
	_, ok := d.(protoreflect.ServiceDescriptor)
	return ok
}
