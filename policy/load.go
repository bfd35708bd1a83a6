package policy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"gopkg.in/yaml.v3"
)

// Options says what Load reads.
type Options struct {
	// Paths are files or directories. Directories are read recursively; inside them, files
	// and directories whose names start with "." are skipped (editor swap files, .git, the
	// ..data links of a Kubernetes ConfigMap volume), as are files with other extensions.
	// Loaded are Rego modules (*.rego, except *_test.rego) and data files (*.json, *.yaml,
	// *.yml).
	//
	// Data is placed as OPA's loader places it: a data file directly inside a given
	// directory, or named itself in Paths, is merged at the root of data (so its top level
	// must be an object); a file in a subdirectory is placed under the subdirectory names,
	// e.g. policies/etcd/limits.yaml (with Paths ["policies"]) becomes data.etcd. Two files
	// that set the same key are an error.
	Paths []string

	// Tests also loads *_test.rego modules. The proxy leaves this false; ztpctl policy test
	// sets it to hand the same parsed modules (Modules) to the OPA tester.
	Tests bool

	// Config is data from ztp.yaml (config.Config.PolicyData), placed at data.ztp_config
	// for the policy and its tests. It counts towards the version as a file of its own
	// (see Version), so a policy reads the same limits as the proxy enforces, and a
	// change to them is a new policy version. Nil: no data.ztp_config.
	Config map[string]any

	// Now is the clock that time.now_ns reads during Eval. Nil means time.Now. Policies
	// should prefer input.time, which is recorded in the audit log and can be replayed.
	Now func() time.Time
}

// Engine is a loaded, compiled policy with its query prepared. It is immutable and safe for
// concurrent use.
type Engine struct {
	// The decision query, compiled by rego's PrepareForEval (which also reports
	// every compile error) and run with topdown directly: rego's per-evaluation
	// set-up (eval context, result generation, a cancellation goroutine) cost
	// about a third of an evaluation of the demo policy.
	compiler *ast.Compiler
	qc       ast.QueryCompiler
	body     ast.Body
	store    storage.Store
	names    map[ast.Var]int // query variable → index in decisionNames of the rule it binds
	rules    map[string]bool // decision rules the policy defines → always has a value (see decisionRules)
	version  string
	modules  map[string]*ast.Module
	data     map[string]any
	now      func() time.Time
}

// policyFile is one file read from disk. Its bytes are read exactly once, so the version
// always describes what was compiled even when the file changes during Load.
type policyFile struct {
	display string   // path as given plus the walk, for error messages (policies/etcd.rego)
	logical string   // slash-separated path relative to its root; for Version and sorting
	dir     []string // subdirectories between the root and the file: where its data goes
	content []byte
}

// The file kinds Load understands, by extension.
const (
	kindRego = iota + 1
	kindData
)

func fileKind(name string) int {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".rego":
		return kindRego
	case ".json", ".yaml", ".yml":
		return kindData
	}
	return 0
}

// Load reads, parses and compiles the policy files in opts.Paths and prepares the decision
// query. Every problem is reported at once and is fatal: there is no partially loaded
// engine. Compile errors read "file:line:col: code: message".
//
// When a module refers to data.ztp.lib, the helper library shipped with ztp (see Library)
// is compiled in too, unless the files bring their own package ztp.lib.
func Load(ctx context.Context, opts Options) (*Engine, error) {
	src, err := readSource(opts.Paths, opts.Tests)
	if err != nil {
		return nil, err
	}
	if err := src.addConfig(opts.Config); err != nil {
		return nil, err
	}
	modules, files, err := src.selectModules(opts.Tests)
	if err != nil {
		return nil, err
	}
	return newEngine(ctx, src, modules, files, opts)
}

// source is one read of the policy files, parsed: what Load compiles and what the tester
// runs come from the same bytes.
type source struct {
	paths   []string
	files   []policyFile
	modules map[string]*ast.Module // by display path; test modules included when read
	data    map[string]any
}

func readSource(paths []string, tests bool) (*source, error) {
	files, err := readFiles(paths, tests)
	if err != nil {
		return nil, err
	}
	caps := Capabilities()
	src := &source{paths: paths, files: files, modules: map[string]*ast.Module{}, data: map[string]any{}}
	var parseErrs ast.Errors
	for _, f := range files {
		switch fileKind(f.display) {
		case kindRego:
			m, err := parseModule(f.display, f.content, caps)
			if err != nil {
				parseErrs = append(parseErrs, asASTErrors(err)...)
				continue
			}
			src.modules[f.display] = m
		case kindData:
			doc, err := decodeData(f.display, f.content)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrData, f.display, err)
			}
			if err := mergeData(src.data, f.dir, doc); err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrData, f.display, err)
			}
		}
	}
	if len(parseErrs) > 0 {
		return nil, compileError(parseErrs)
	}
	return src, nil
}

// ConfigDataKey is where Options.Config is placed: data.ztp_config.
const ConfigDataKey = "ztp_config"

// configLogical is the path Options.Config counts under in the version: no policy file
// can have it (logical paths are relative).
const configLogical = "/ztp/config/ztp_config.json"

// addConfig places cfg at data.ztp_config and adds it to the files the version is computed
// over, as its canonical JSON (encoding/json sorts object keys).
func (s *source) addConfig(cfg map[string]any) error {
	if len(cfg) == 0 {
		return nil
	}
	if _, ok := s.data[ConfigDataKey]; ok {
		return fmt.Errorf("%w: data.%s is set from ztp.yaml; a data file may not set it", ErrData, ConfigDataKey)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("%w: data.%s: %w", ErrData, ConfigDataKey, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("%w: data.%s: %w", ErrData, ConfigDataKey, err)
	}
	s.data[ConfigDataKey] = doc
	s.files = append(s.files, policyFile{display: "ztp.yaml (data." + ConfigDataKey + ")", logical: configLogical, content: js})
	return nil
}

func parseModule(name string, content []byte, caps *ast.Capabilities) (*ast.Module, error) {
	return ast.ParseModuleWithOpts(name, string(content), ast.ParserOptions{
		RegoVersion:       ast.RegoV1,
		Capabilities:      caps,
		ProcessAnnotation: true,
	})
}

// selectModules picks the modules to compile, test modules only when tests is set, plus the
// helper library when they refer to it, and the files their version is computed over.
func (s *source) selectModules(tests bool) (map[string]*ast.Module, []policyFile, error) {
	modules := make(map[string]*ast.Module, len(s.modules))
	var files []policyFile
	for _, f := range s.files {
		if !tests && isTestFile(f.display) {
			continue
		}
		files = append(files, f)
		if m, ok := s.modules[f.display]; ok {
			modules[f.display] = m
		}
	}
	if len(modules) == 0 {
		return nil, nil, fmt.Errorf("%w in %s", ErrNoPolicy, strings.Join(s.paths, ", "))
	}
	if needsLibrary(modules) {
		lib, err := parseModule(libraryFile, []byte(librarySource), Capabilities())
		if err != nil {
			return nil, nil, compileError(asASTErrors(err))
		}
		modules[libraryFile] = lib
		files = append(files, policyFile{display: libraryFile, logical: libraryLogical, content: []byte(librarySource)})
	}
	return modules, files, nil
}

// newEngine compiles modules (which must include package ztp) and prepares the decision
// query; files give the version.
func newEngine(ctx context.Context, src *source, modules map[string]*ast.Module, files []policyFile, opts Options) (*Engine, error) {
	hasZTP := false
	for _, m := range modules {
		hasZTP = hasZTP || m.Package.Path.Equal(ztpRef)
	}
	if !hasZTP {
		return nil, ErrNoPackage
	}
	data := deepCopy(src.data).(map[string]any)
	rules := decisionRules(modules)
	storeData, err := ast.InterfaceToValue(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrData, err)
	}
	store := inmem.NewFromASTObject(storeData.(ast.Object))
	var compiler *ast.Compiler
	regoOpts := []func(*rego.Rego){
		rego.SetRegoVersion(ast.RegoV1),
		rego.Capabilities(Capabilities()),
		rego.StrictBuiltinErrors(true),
		rego.Store(store),
		rego.Query(buildQuery(rules)),
		rego.CompilerHook(func(c *ast.Compiler) { compiler = c }),
	}
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		regoOpts = append(regoOpts, rego.ParsedModule(modules[name]))
	}
	if _, err := rego.New(regoOpts...).PrepareForEval(ctx); err != nil {
		var astErrs ast.Errors
		if errors.As(err, &astErrs) {
			return nil, compileError(astErrs)
		}
		return nil, fmt.Errorf("%w: %w", ErrCompile, err)
	}
	if compiler == nil {
		return nil, fmt.Errorf("%w: no compiler from rego", ErrCompile)
	}
	// The query again, with the compiler rego compiled the modules with, as rego
	// compiles it (no package context, print statements off).
	qc := compiler.QueryCompiler().WithContext(ast.NewQueryContext()).WithEnablePrintStatements(false).WithStrict(false)
	body, err := qc.Compile(ast.MustParseBodyWithOpts(buildQuery(rules), ast.ParserOptions{RegoVersion: ast.RegoV1}))
	if err != nil {
		return nil, fmt.Errorf("%w: decision query: %w", ErrCompile, err)
	}
	names := map[ast.Var]int{}
	for i, name := range decisionNames {
		names[ast.Var(name)] = i
	}
	for gen, orig := range qc.RewrittenVars() {
		if i, ok := names[orig]; ok {
			names[gen] = i
		}
	}

	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Engine{
		compiler: compiler,
		qc:       qc,
		body:     body,
		store:    store,
		names:    names,
		rules:    rules,
		version:  version(files),
		modules:  modules,
		data:     data,
		now:      now,
	}, nil
}

func isTestFile(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// Version identifies the loaded policy: "sha256:" and the hex SHA-256 over every loaded file,
// sorted by path relative to its root, each framed as
// uint64be(len(path)) || path || uint64be(len(content)) || content
// after the domain prefix "ztp-policy-v1\x00". Paths are relative to the directory given in
// Options.Paths (a file given directly counts by its base name), so the same checkout gives the
// same version wherever it sits on disk, and ztpctl can compare a local tree with the proxy.
// Files Load skips (tests unless Options.Tests, other extensions, hidden names) do not
// contribute. The helper library, when compiled in, counts as a file with the path
// "/ztp/lib/ztp/lib.rego", and Options.Config as "/ztp/config/ztp_config.json" with its
// JSON (sorted keys) as the content; no policy file can have these paths.
func (e *Engine) Version() string { return e.version }

// Modules returns copies of the parsed modules, keyed by file path, for tools that compile
// them again (the OPA tester behind ztpctl policy test). The helper library, when the
// policy uses it, is among them as "ztp:lib/ztp/lib.rego".
func (e *Engine) Modules() map[string]*ast.Module {
	out := make(map[string]*ast.Module, len(e.modules))
	for k, m := range e.modules {
		out[k] = m.Copy()
	}
	return out
}

// Data returns a deep copy of the data document built from the data files.
func (e *Engine) Data() map[string]any {
	return deepCopy(e.data).(map[string]any)
}

func version(files []policyFile) string {
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b policyFile) int {
		return cmp.Or(strings.Compare(a.logical, b.logical), bytes.Compare(a.content, b.content))
	})
	h := sha256.New()
	io.WriteString(h, "ztp-policy-v1\x00")
	var n [8]byte
	for _, f := range sorted {
		binary.BigEndian.PutUint64(n[:], uint64(len(f.logical)))
		h.Write(n[:])
		io.WriteString(h, f.logical)
		binary.BigEndian.PutUint64(n[:], uint64(len(f.content)))
		h.Write(n[:])
		h.Write(f.content)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// readFiles walks the paths and reads every file Load uses. The same file reached twice
// (a directory and a file inside it both given) is read once.
func readFiles(paths []string, tests bool) ([]policyFile, error) {
	w := walker{tests: tests, seenFile: map[string]bool{}, seenDir: map[string]bool{}}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if st.IsDir() {
			if err := w.dir(p, nil); err != nil {
				return nil, err
			}
			continue
		}
		if fileKind(p) == 0 {
			return nil, fmt.Errorf("%w: %s (want .rego, .json, .yaml or .yml)", ErrUnsupportedFile, p)
		}
		if err := w.file(p, filepath.Base(p), nil); err != nil {
			return nil, err
		}
	}
	return w.files, nil
}

type walker struct {
	tests    bool
	files    []policyFile
	seenFile map[string]bool // absolute path
	seenDir  map[string]bool // resolved path, so symlink loops end
}

func (w *walker) dir(path string, dir []string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if w.seenDir[real] {
		return nil
	}
	w.seenDir[real] = true
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(path, name)
		st, err := os.Stat(full) // follows symlinks, as config managers use them
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		switch {
		case st.IsDir():
			if err := w.dir(full, append(slices.Clip(dir), name)); err != nil {
				return err
			}
		case st.Mode().IsRegular() && fileKind(name) != 0:
			logical := strings.Join(append(slices.Clip(dir), name), "/")
			if err := w.file(full, logical, dir); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *walker) file(path, logical string, dir []string) error {
	if !w.tests && isTestFile(path) {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if w.seenFile[abs] {
		return nil
	}
	w.seenFile[abs] = true
	content, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	w.files = append(w.files, policyFile{display: path, logical: logical, dir: dir, content: content})
	return nil
}

// decodeData parses a JSON or YAML data file into JSON-shaped Go values (numbers as
// json.Number or Go integers and floats, maps keyed by string).
func decodeData(name string, content []byte) (any, error) {
	if strings.ToLower(filepath.Ext(name)) == ".json" {
		dec := json.NewDecoder(bytes.NewReader(content))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errors.New("unexpected data after the top-level value")
		}
		return v, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(content))
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			return nil, errors.New("empty YAML document")
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, errors.New("more than one YAML document")
	}
	return normalizeYAML(v)
}

// normalizeYAML rejects what YAML can express but JSON (and so OPA data) cannot.
func normalizeYAML(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			n, err := normalizeYAML(x)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			v[k] = n
		}
		return v, nil
	case []any:
		for i, x := range v {
			n, err := normalizeYAML(x)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			v[i] = n
		}
		return v, nil
	case map[any]any:
		return nil, errors.New("mapping keys must be strings")
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, errors.New("NaN and infinity are not JSON numbers")
		}
		return v, nil
	case nil, bool, string, int, int64, uint64:
		return v, nil
	}
	return nil, fmt.Errorf("unsupported YAML value of type %T", v)
}

// mergeData places doc at dir inside data, merging objects and refusing to overwrite.
func mergeData(data map[string]any, dir []string, doc any) error {
	if len(dir) == 0 {
		obj, ok := doc.(map[string]any)
		if !ok {
			return errors.New("top-level value must be an object (it is merged at the root of data)")
		}
		return mergeObject(data, obj, "data")
	}
	parent, at := data, "data"
	for _, name := range dir[:len(dir)-1] {
		at += "." + name
		next, ok := parent[name]
		if !ok {
			next = map[string]any{}
			parent[name] = next
		}
		obj, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("conflict at %s: already set by another data file", at)
		}
		parent = obj
	}
	return mergeObject(parent, map[string]any{dir[len(dir)-1]: doc}, at)
}

func mergeObject(dst, src map[string]any, at string) error {
	for _, k := range slices.Sorted(maps.Keys(src)) {
		here := at + "." + k
		old, exists := dst[k]
		if !exists {
			dst[k] = src[k]
			continue
		}
		oldObj, ok1 := old.(map[string]any)
		newObj, ok2 := src[k].(map[string]any)
		if !ok1 || !ok2 {
			return fmt.Errorf("conflict at %s: already set by another data file", here)
		}
		if err := mergeObject(oldObj, newObj, here); err != nil {
			return err
		}
	}
	return nil
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = deepCopy(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = deepCopy(x)
		}
		return out
	}
	return v
}

func asASTErrors(err error) ast.Errors {
	var errs ast.Errors
	if errors.As(err, &errs) {
		return errs
	}
	var one *ast.Error
	if errors.As(err, &one) {
		return ast.Errors{one}
	}
	return ast.Errors{ast.NewError(ast.ParseErr, nil, "%s", err.Error())}
}

// compileError renders OPA's errors as "file:line:col: code: message", the form editors and
// CI annotations understand (OPA's own rendering omits the column).
func compileError(errs ast.Errors) error {
	lines := make([]string, 0, len(errs))
	for _, e := range errs {
		lines = append(lines, formatError(e.Location, e.Code, e.Message))
	}
	slices.Sort(lines)
	return fmt.Errorf("%w: %s", ErrCompile, strings.Join(lines, "; "))
}

func formatError(loc *ast.Location, code, msg string) string {
	if hint, ok := removedHint(msg); ok {
		msg += hint
	}
	if loc == nil {
		return code + ": " + msg
	}
	file := loc.File
	if file == "" {
		// Only the query Load builds has no file; errors there come from the shape of the
		// decision rules (allow defined as a function, for instance).
		file = "ztp decision query"
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", file, loc.Row, loc.Col, code, msg)
}

// removedHint explains why a call to a removed built-in does not compile; OPA alone would
// only say the function is undefined.
func removedHint(msg string) (string, bool) {
	for _, name := range removedBuiltins {
		if strings.HasSuffix(msg, "undefined function "+name) {
			return " (disabled in ztp: policies may not reach the network or the OPA runtime)", true
		}
	}
	return "", false
}

// evalError renders a topdown error with its position, like compile errors.
func evalError(err error) error {
	var te *topdown.Error
	if errors.As(err, &te) {
		return fmt.Errorf("%w: %s", ErrEval, formatError(te.Location, te.Code, te.Message))
	}
	return fmt.Errorf("%w: %w", ErrEval, err)
}
