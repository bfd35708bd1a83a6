package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	// The tool starts copies of itself as the backend and the bare forwarder.
	if len(os.Args) > 1 {
		if code, ok := runRole(os.Args[1], os.Args[2:]); ok {
			os.Exit(code)
		}
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ztp-bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ztp-bench:", err)
		os.Exit(1)
	}
}

// Path names, in the order each round runs them.
const (
	pathDirect   = "direct"
	pathBare     = "bare"
	pathBareMTLS = "bare-mtls"
	pathFull     = "full"
)

var allPaths = []string{pathDirect, pathBare, pathBareMTLS, pathFull}

// options are the command-line settings of one run.
type options struct {
	proxyBin     string        // the ztp-proxy binary of the full path
	dir          string        // where to make the work directory; "" = os.TempDir()
	keep         bool          // keep the work directory
	jsonFile     string        // where to write the JSON report; "" = nowhere
	cpuProfile   string        // where to write the full proxy's CPU profile; "" = not taken
	warmup       time.Duration // per row, not measured
	duration     time.Duration // per row, measured
	rounds       int
	concurrency  []int
	paths        []string // always starts with direct: ratios need it
	payload      int      // request payload bytes
	floorSamples int      // fsync and commit samples for the floors
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ztp-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: ztp-bench [flags]

Measures ztp-proxy against calling its backend directly (a developer tool; see
'go doc ./cmd/ztp-bench'). Prints a Markdown table; -json writes every figure.

Example:
  ztp-bench -proxy-bin bin/ztp-proxy -json bench-results.json

Flags:
`)
		fs.PrintDefaults()
	}
	var conc, paths string
	fs.StringVar(&o.proxyBin, "proxy-bin", "bin/ztp-proxy", "ztp-proxy binary for the full path (make build)")
	fs.StringVar(&o.dir, "dir", "", "where the run makes its work directory (certificates, audit log, process logs); the durability floor is measured on its filesystem (default: the system's temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (audit log, proxy log) after the run")
	fs.StringVar(&o.jsonFile, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the full proxy's CPU profile, taken over the measured window of its last round at the highest concurrency, to this file (go tool pprof bin/ztp-proxy FILE)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured window, not measured")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured window of each row")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every path at every concurrency, interleaved")
	fs.StringVar(&conc, "c", "1,16,64", "comma-separated worker counts (calls in flight)")
	fs.StringVar(&paths, "paths", strings.Join(allPaths, ","), "comma-separated paths to measure besides direct: bare, bare-mtls, full")
	fs.IntVar(&o.payload, "payload", 64, "request payload bytes")
	fs.IntVar(&o.floorSamples, "floor-samples", 200, "samples of fdatasync, bbolt commit and audit append for the durability floor (0: skip)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for f := range strings.SplitSeq(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-c: %q is not a positive worker count", f)
		}
		o.concurrency = append(o.concurrency, n)
	}
	o.paths = []string{pathDirect}
	for p := range strings.SplitSeq(paths, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == pathDirect || p == "":
		case !slices.Contains(allPaths, p):
			return o, fmt.Errorf("-paths: unknown path %q (want %s)", p, strings.Join(allPaths[1:], ", "))
		case !slices.Contains(o.paths, p):
			o.paths = append(o.paths, p)
		}
	}
	// Keep the documented order whatever order the flag gave.
	slices.SortFunc(o.paths, func(a, b string) int { return slices.Index(allPaths, a) - slices.Index(allPaths, b) })
	switch {
	case o.rounds < 1:
		return o, fmt.Errorf("-rounds: %d, want at least 1", o.rounds)
	case o.duration <= 0 || o.warmup < 0:
		return o, fmt.Errorf("-duration must be positive and -warmup not negative")
	case o.payload < 0 || o.floorSamples < 0:
		return o, fmt.Errorf("-payload and -floor-samples must not be negative")
	}
	return o, nil
}
