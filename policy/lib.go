package policy

import (
	_ "embed"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// librarySource is the Rego helper library shipped with ztp (package ztp.lib). Its own tests
// sit beside it in lib/ztp/lib_test.rego and run with the package's Go tests.
//
//go:embed lib/ztp/lib.rego
var librarySource string

const (
	// libraryFile names the library in modules, errors and coverage.
	libraryFile = "ztp:lib/ztp/lib.rego"
	// libraryLogical is its path in the version hash. Walked files have relative paths and
	// files named directly their base name, so no policy file can share it.
	libraryLogical = "/ztp/lib/ztp/lib.rego"
)

var libraryRef = ast.MustParseRef("data.ztp.lib")

// Library returns the source of the helper library (package ztp.lib) that Load compiles in
// when a policy refers to data.ztp.lib: method classification (mutating, read_only), key
// ranges of etcd-style requests (touches_prefix, touches_key, whole_keyspace) and principal
// helpers (is_human, in_group). ztpctl policy lib prints it.
func Library() string { return librarySource }

// needsLibrary reports whether the modules may read data.ztp.lib and do not define package
// ztp.lib themselves (a tree may vendor a copy of the library, pinned to its own version).
//
// It errs towards loading: a reference it cannot rule out (data.ztp[x], the whole of
// data.ztp) loads the library. Leaving it out when a rule needs it would turn
// `deny contains ... if lib.mutating` into a rule that never fires.
func needsLibrary(modules map[string]*ast.Module) bool {
	for _, m := range modules {
		if m.Package.Path.Equal(libraryRef) {
			return false
		}
	}
	for _, m := range modules {
		if refersToLibrary(m) {
			return true
		}
	}
	return false
}

func refersToLibrary(m *ast.Module) bool {
	aliases := map[ast.Var]ast.Ref{}
	for _, imp := range m.Imports {
		path, ok := imp.Path.Value.(ast.Ref)
		if !ok || !path.HasPrefix(ast.DefaultRootRef) {
			continue
		}
		if len(path) >= len(libraryRef) && mayReachLibrary(path) {
			return true
		}
		alias := imp.Alias
		if alias == "" {
			last := path[len(path)-1]
			s, ok := last.Value.(ast.String)
			if !ok {
				continue
			}
			alias = ast.Var(s)
		}
		aliases[alias] = path
	}
	found := false
	for _, r := range m.Rules {
		ast.WalkRefs(r, func(ref ast.Ref) bool {
			if found {
				return true
			}
			head, ok := ref[0].Value.(ast.Var)
			if !ok {
				return false
			}
			full := ref
			switch {
			case head.Equal(ast.DefaultRootDocument.Value):
			case aliases[head] != nil:
				full = slices.Concat(aliases[head], ref[1:])
			default:
				return false
			}
			found = mayReachLibrary(full)
			return found
		})
		if found {
			return true
		}
	}
	return false
}

// mayReachLibrary reports whether a reference rooted at data may read data.ztp.lib: it
// names the library or something in it, names a document that contains it (data, data.ztp),
// or picks a key of data or data.ztp that is not a constant.
func mayReachLibrary(ref ast.Ref) bool {
	for i, t := range libraryRef {
		if i == 0 {
			continue // the root, data: a variable, so not ground
		}
		if i >= len(ref) {
			return true
		}
		switch ref[i].Value.(type) {
		case ast.String:
			if !ref[i].Equal(t) {
				return false
			}
		case ast.Number, ast.Boolean, ast.Null:
			return false
		default: // a variable, a reference, a call: may well be "lib"
			return true
		}
	}
	return true
}
