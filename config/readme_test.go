package config

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestReadmeConfigReference keeps the README's configuration reference and the
// Config struct in step: every key in the README block exists (no unknown keys),
// and every key the struct accepts is shown.
func TestReadmeConfigReference(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)### Configuration reference.*?```yaml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no yaml block under \"### Configuration reference\"")
	}
	var root yaml.Node
	if err := yaml.Unmarshal(m[1], &root); err != nil {
		t.Fatalf("README config block is not YAML: %v", err)
	}
	p := &parser{file: "README.md", lines: map[string]int{}}
	p.walk(root.Content[0], reflect.TypeFor[Config](), "")
	for _, e := range p.errs {
		t.Errorf("README config block: %v", e)
	}

	shown := map[string]bool{}
	index := regexp.MustCompile(`\[\d+\]`)
	for k := range p.lines {
		shown[index.ReplaceAllString(k, "")] = true
	}
	var missing []string
	for _, k := range structKeys(reflect.TypeFor[Config](), "") {
		if !shown[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README config reference lacks keys: %s", strings.Join(missing, ", "))
	}
}

// structKeys lists the dotted yaml key paths a type accepts (slices flattened).
func structKeys(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Duration]() {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		out = append(out, key)
		out = append(out, structKeys(t.Field(i).Type, key)...)
	}
	return out
}
