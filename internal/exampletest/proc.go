package exampletest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// Proc is a subprocess the test owns; t.Cleanup kills it if the test has not stopped it,
// and shows the end of its stderr when the test failed.
type Proc struct {
	Name           string
	Cmd            *exec.Cmd
	Stdout, Stderr proxytest.SyncBuffer
	Done           chan struct{} // closed when the process has exited
	Err            error         // Wait's result, valid once Done is closed
}

// StartProc starts cmd, collecting its output.
func StartProc(t *testing.T, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: cmd, Done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.Stdout, &p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.Err = cmd.Wait()
		close(p.Done)
	}()
	t.Cleanup(func() {
		p.Stop(t, syscall.SIGKILL, 10*time.Second)
		if t.Failed() {
			t.Logf("--- %s (%v) stderr:\n%s", name, p.Err, Tail(p.Stderr.String(), 60))
		}
	})
	return p
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// Stop signals the process unless it has exited, waits up to within and kills it after
// that. It returns the process's exit error (nil: exit status 0).
func (p *Proc) Stop(t *testing.T, sig syscall.Signal, within time.Duration) error {
	t.Helper()
	if !p.Exited() {
		if err := p.Cmd.Process.Signal(sig); err != nil && !p.Exited() {
			t.Errorf("signal %s: %v", p.Name, err)
		}
	}
	select {
	case <-p.Done:
		return p.Err
	case <-time.After(within):
		p.Cmd.Process.Kill()
		<-p.Done
		return fmt.Errorf("%s did not exit within %v of %v and was killed", p.Name, within, sig)
	}
}

// WaitFor polls cond until it holds, failing the test after timeout.
func WaitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// FreePorts returns n distinct loopback ports that were free a moment ago, for servers
// that take an address rather than a listener (etcd advertises its URLs; gobgpd and
// ztpctl tunnel are handed --listen addresses).
func FreePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Tail is the last n lines of s, with a note of how many came before.
func Tail(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = append([]string{fmt.Sprintf("... (%d lines before)", len(ls)-n)}, ls[len(ls)-n:]...)
	}
	return strings.Join(ls, "\n")
}

// builds holds the binaries built by this test binary, by package path.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]string
}

// Build builds the main package pkg (e.g. "github.com/ztp-dev/ztp/cmd/ztp-proxy") once per
// test binary, with -race when the test runs under the race detector, and returns the
// binary's path. RemoveBuilds (from TestMain) deletes them.
func Build(t *testing.T, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if bin, ok := builds.bins[pkg]; ok {
		return bin
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "ztp-example-bin-")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir, builds.bins = dir, map[string]string{}
	}
	bin := filepath.Join(builds.dir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	start := time.Now()
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("go %s: %v", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	builds.bins[pkg] = bin
	return bin
}

// RemoveBuilds deletes what Build built; call it from TestMain after m.Run.
func RemoveBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir, builds.bins = "", nil
	}
}

// Require skips an end-to-end test in -short mode or when one of tools is not in PATH
// (naming them and install, the command that installs them), unless the environment
// variable env is "1": then a missing tool fails the test, so that CI cannot pass by
// skipping it.
func Require(t *testing.T, env, install string, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("end-to-end test with %v: skipped in -short mode", tools)
	}
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%v not in PATH (Debian: %s)", missing, install)
		if os.Getenv(env) == "1" {
			t.Fatalf("%s; %s=1 requires this test to run", msg, env)
		}
		t.Skip(msg)
	}
}
