package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "true"},
	}}
	tests := []struct {
		name     string
		v, r     string
		bi       *debug.BuildInfo
		want     Info
		wantLine string
	}{
		{"stamped wins", "v1.2.3", "feedface", vcs, Info{Version: "v1.2.3", Revision: "feedface", Modified: true, Go: "go1.26.8"}, "v1.2.3 (revision feedface+modified, go1.26.8)"},
		{"vcs revision from build info", "", "", vcs, Info{Version: "devel", Revision: "0123456789abcdef0123456789abcdef01234567", Modified: true, Go: "go1.26.8"}, "devel (revision 0123456789ab+modified, go1.26.8)"},
		{"go install of a tagged module", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.0"}}, Info{Version: "v0.4.0", Revision: "unknown", Go: "go1.26.8"}, "v0.4.0 (revision unknown, go1.26.8)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.v, tc.r, tc.bi)
			if got != tc.want {
				t.Errorf("resolve = %+v, want %+v", got, tc.want)
			}
			if got.String() != tc.wantLine {
				t.Errorf("String = %q, want %q", got.String(), tc.wantLine)
			}
		})
	}
	if got := resolve("", "", nil); got.Version != "devel" || got.Revision != "unknown" || !strings.HasPrefix(got.Go, "go") {
		t.Errorf("resolve without build info = %+v, want devel/unknown and the runtime's Go", got)
	}
}

// TestGetNeverEmpty: whatever the test binary was built with, no field is empty.
func TestGetNeverEmpty(t *testing.T) {
	i := Get()
	if i.Version == "" || i.Revision == "" || i.Go == "" {
		t.Errorf("Get() = %+v: no field may be empty", i)
	}
}

// TestMakefileStamps builds a program with the -X flags the Makefile's build
// target passes, and checks that they reach Get: a renamed variable would
// otherwise be ignored by the linker without a word.
func TestMakefileStamps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"version", "revision"} {
		if !strings.Contains(string(mk), "-X github.com/ztp-dev/ztp/internal/version."+v+"=") {
			t.Fatalf("the Makefile does not stamp internal/version.%s with -X", v)
		}
	}
	bin := filepath.Join(t.TempDir(), "printversion")
	ldflags := "-X github.com/ztp-dev/ztp/internal/version.version=v9.8.7 -X github.com/ztp-dev/ztp/internal/version.revision=abcdef"
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, "./testdata/printversion").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil || !strings.HasPrefix(string(out), "v9.8.7 (revision abcdef") {
		t.Errorf("stamped binary prints %q, %v; want v9.8.7 (revision abcdef…", out, err)
	}
}
