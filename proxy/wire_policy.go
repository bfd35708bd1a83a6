package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/policy"
)

const (
	// policyDebounce is how long the watcher waits after the last change under the
	// policy paths before it reloads: one save by an editor or a config manager is
	// several events (write, chmod, rename), and a checkout touches many files.
	policyDebounce = 200 * time.Millisecond
	// policyReloadTimeout bounds one reload: read, compile and the policy's tests.
	policyReloadTimeout = time.Minute
)

// Reload triggers, as logged and audited.
const (
	triggerStart = "start"
	triggerFile  = "file change"
	triggerHUP   = "SIGHUP"
)

// wirePolicy makes policies reloadable: on changes under policy.paths (fsnotify, on the
// directories, so that rename-replace counts too) and on Reload (SIGHUP). A candidate that
// does not compile or fails its own test_ rules is rejected and the last good policy stays
// in force; every reload that changes the policy and every rejection is audited (type
// "policy"). The swap is one atomic pointer store (Pipeline.SetPolicy) of a fully built
// engine, so no message is decided by a half-loaded policy.
//
// The policy New loaded must pass its own tests too: the proxy does not start with a
// policy whose tests fail.
func (s *Server) wirePolicy(ctx context.Context) error {
	r := &policyReloader{s: s, paths: policyPaths(s.cfg), data: s.cfg.PolicyData(), done: make(chan struct{})}
	if err := r.reload(ctx, r.paths, r.data, triggerStart); err != nil {
		return fmt.Errorf("policy.paths: %w", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy.paths: watching for changes: %w", err)
	}
	r.watcher = w
	r.rewatch()
	go r.run()
	s.reloaders = append(s.reloaders, r.apply)
	s.stops = append(s.stops, r.stop)
	return nil
}

func policyPaths(cfg *config.Config) []string {
	paths := make([]string, len(cfg.Policy.Paths))
	for i, p := range cfg.Policy.Paths {
		paths[i] = filepath.Clean(cfg.Resolve(p))
	}
	return paths
}

// policyReloader owns the file watcher and serialises reloads.
type policyReloader struct {
	s       *Server
	watcher *fsnotify.Watcher
	done    chan struct{} // closed when run returns

	reloadMu sync.Mutex // one reload at a time

	mu    sync.Mutex // guards the fields below; never held across a reload
	paths []string
	data  map[string]any // data.ztp_config, from the config in force
	// trees are the watched directories under policy.paths: any change in them counts,
	// and so does the removal or renaming of one of them.
	trees map[string]bool
	// parents are the directories holding configured paths that are files, symbolic
	// links or missing, watched for changes to those names only: a file replaced by an
	// editor's rename, a link swapped to a new release (ln -sfn), a path that appears.
	// A plain directory's parent is not watched: it may hold a busy file (the audit
	// log), whose every write would be an event.
	parents map[string][]string
}

// reload loads and tests the policy at paths with data as data.ztp_config (paths nil: the
// current policy.paths and data) and, when its version differs from the active one,
// audits the change and swaps it in. A rejected candidate is logged and audited, and the
// active policy stays. On success paths and data become the current ones.
func (r *policyReloader) reload(ctx context.Context, paths []string, data map[string]any, trigger string) error {
	// Held across the swap and the update of paths, so that a reload of the old paths
	// cannot overtake a SIGHUP that changed them.
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if paths == nil {
		r.mu.Lock()
		paths, data = r.paths, r.data
		r.mu.Unlock()
	}
	if err := r.load(ctx, paths, data, trigger); err != nil {
		return err
	}
	r.mu.Lock()
	r.paths, r.data = paths, data
	r.mu.Unlock()
	return nil
}

func (r *policyReloader) load(ctx context.Context, paths []string, data map[string]any, trigger string) error {
	s := r.s
	old := s.pipeline.active().eval.Version()

	eng, rep, err := policy.LoadTested(ctx, policy.Options{Paths: paths, Config: data})
	if err != nil {
		if trigger == triggerStart {
			return err
		}
		s.countReload("failed")
		s.log.Error("policy rejected; keeping the last good policy", "trigger", trigger, "active", old, "err", err)
		s.policyRecord(ctx, old, fmt.Sprintf("policy rejected (%s); %s stays active: %v", trigger, old, err))
		return fmt.Errorf("policy rejected; %s stays active: %w", old, err)
	}
	if eng.Version() == old {
		return nil
	}
	// The change is on record before it takes effect, like every other change ztp makes.
	detail := fmt.Sprintf("policy loaded (%s): %s replaces %s; %d tests passed", trigger, eng.Version(), old, rep.Count(policy.TestPass))
	if err := s.policyRecord(ctx, eng.Version(), detail); err != nil {
		s.countReload("failed")
		s.log.Error("policy not activated: audit log unavailable", "trigger", trigger, "candidate", eng.Version(), "active", old, "err", err)
		return fmt.Errorf("policy %s not activated: audit log unavailable: %w", eng.Version(), err)
	}
	s.pipeline.SetPolicy(eng)
	s.countReload("ok")
	s.log.Info("policy loaded", "trigger", trigger, "version", eng.Version(), "previous", old, "tests_passed", rep.Count(policy.TestPass))
	return nil
}

// apply is the reloader Server.Reload calls with the new config: the policy is read again
// from the (possibly changed) policy.paths, with the config's data.ztp_config (changed
// budgets make a new policy version). policy.mode is fixed at start-up.
func (r *policyReloader) apply(ctx context.Context, cfg *config.Config) error {
	if cfg.Policy.Mode != string(r.s.pipeline.mode) {
		r.s.log.Warn("policy.mode changed in the config; it takes effect on restart", "running", r.s.pipeline.mode, "config", cfg.Policy.Mode)
	}
	if err := r.reload(ctx, policyPaths(cfg), cfg.PolicyData(), triggerHUP); err != nil {
		return err
	}
	r.rewatch()
	return nil
}

// run turns bursts of relevant file events into one reload each.
func (r *policyReloader) run() {
	defer close(r.done)
	timer := time.NewTimer(policyDebounce)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-r.watcher.Events:
			if !ok {
				return
			}
			if r.relevant(ev.Name) {
				timer.Reset(policyDebounce)
			}
		case err, ok := <-r.watcher.Errors:
			if !ok {
				return
			}
			r.s.log.Warn("policy watcher", "err", err)
		case <-timer.C:
			// Directories may have come or gone (a new subdirectory, a replaced tree,
			// a switched symlink). Watch them before reading the policy, so that a
			// change made right after this reload is seen too.
			r.rewatch()
			ctx, cancel := context.WithTimeout(context.Background(), policyReloadTimeout)
			r.reload(ctx, nil, nil, triggerFile) // logged and audited; nothing more to do here
			cancel()
		}
	}
}

// relevant reports whether a change to name may change the policy.
func (r *policyReloader) relevant(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	dir := filepath.Dir(name)
	return r.trees[dir] || r.trees[name] || slices.Contains(r.parents[dir], filepath.Base(name))
}

// rewatch watches the directories under the policy paths (see trees and parents). Hidden
// directories are skipped as Load skips them, but changes inside a watched directory count
// whatever their name: a Kubernetes ConfigMap volume swaps its ..data link to publish an
// update.
func (r *policyReloader) rewatch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	trees := map[string]bool{}
	parents := map[string][]string{}
	for _, p := range r.paths {
		if st, err := os.Lstat(p); err != nil || !st.IsDir() {
			parent := filepath.Dir(p)
			parents[parent] = append(parents[parent], filepath.Base(p))
		}
		collectDirs(p, trees, 0)
	}
	want := map[string]bool{}
	for d := range trees {
		want[d] = true
	}
	for d := range parents {
		want[d] = true
	}
	for d := range want {
		if err := r.watcher.Add(d); err != nil {
			r.s.log.Warn("policy watcher: cannot watch directory", "dir", d, "err", err)
		}
	}
	for _, d := range r.watcher.WatchList() {
		if !want[d] {
			r.watcher.Remove(d) // may already be gone with its directory
		}
	}
	r.trees, r.parents = trees, parents
}

// collectDirs adds dir and its non-hidden subdirectories, by their resolved paths: a watch
// follows an inode, so a link swapped to another directory must be watched anew, and
// events name the real path. Links are followed as Load follows them; depth bounds loops.
func collectDirs(dir string, into map[string]bool, depth int) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil || depth > 32 || into[real] {
		return
	}
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return
	}
	into[real] = true
	entries, err := os.ReadDir(real)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		collectDirs(filepath.Join(real, e.Name()), into, depth+1)
	}
}

// stop ends the watcher; a reload in progress finishes first (it may still append its
// audit record: stops run before the audit log closes).
func (r *policyReloader) stop(ctx context.Context) {
	r.watcher.Close()
	select {
	case <-r.done:
	case <-ctx.Done():
	}
}

// policyRecord appends a "policy" audit record naming the version in force after it.
func (s *Server) policyRecord(ctx context.Context, version, detail string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.AuditTimeout)
	defer cancel()
	rec := &audit.Record{Time: s.now().UTC(), Type: audit.TypePolicy, PolicyVersion: version, Detail: detail}
	_, err := s.store.Append(ctx, rec)
	if err != nil {
		s.log.Error("audit append failed for policy record", "detail", detail, "err", err)
	}
	return err
}

// countReload feeds the ztp_policy_reloads_total metric.
func (s *Server) countReload(result string) {
	if s.metrics != nil {
		s.metrics.PolicyReloads.WithLabelValues(result).Inc()
	}
}
