// Package version says which build of ztp is running: the release version and
// VCS revision stamped at build time (make build passes
// -ldflags "-X github.com/ztp-dev/ztp/internal/version.version=… -X …revision=…"),
// or, in a binary built without them (go build, go install), what the Go
// toolchain recorded: the module version and the vcs.revision build setting.
// It never reports an empty field: what is not known is "devel" or "unknown".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags -X; empty in a plain go build.
var (
	version  string
	revision string
)

// Info describes a build.
type Info struct {
	Version  string `json:"version"`  // e.g. v0.3.0, or "devel"
	Revision string `json:"revision"` // VCS commit, or "unknown"
	Modified bool   `json:"modified"` // built from a tree with uncommitted changes (from build info)
	Go       string `json:"go"`       // the Go toolchain, e.g. go1.26.8
}

// Get returns this binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(version, revision, bi)
}

// resolve prefers the stamped values and falls back on the build info.
func resolve(stampedVersion, stampedRevision string, bi *debug.BuildInfo) Info {
	i := Info{Version: stampedVersion, Revision: stampedRevision, Go: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			i.Go = bi.GoVersion
		}
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Revision == "" {
					i.Revision = s.Value
				}
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	return i
}

// String is the one-line form the version commands print, e.g.
// "v0.3.0 (revision 1a2b3c4d5e6f, go1.26.8)".
func (i Info) String() string {
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if i.Modified {
		rev += "+modified"
	}
	return fmt.Sprintf("%s (revision %s, %s)", i.Version, rev, i.Go)
}
