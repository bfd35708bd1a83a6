package proxy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ztp-dev/ztp/decode"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// hostileSize is just under limits.max_message_bytes' default (4 MiB): the
// largest message the proxy accepts.
const hostileSize = 4<<20 - 64

// fill repeats unit until the message would pass hostileSize.
func fill(unit []byte) []byte {
	return bytes.Repeat(unit, hostileSize/len(unit))
}

// nest wraps inner depth times with wrap.
func nest(inner []byte, depth int, wrap func([]byte) []byte) []byte {
	for range depth {
		inner = wrap(inner)
	}
	return inner
}

// hostileShapes are the most expensive 4 MiB messages of wireFile's schema
// we know of: per byte, as many nodes as the wire format allows, in every
// structure the decoder builds (lists, maps, nested and packed messages),
// and, under the node limit, as many bytes per node as JSON escaping
// inflates.
func hostileShapes() []hostileShape {
	anyAny := lenF(6, nest(nil, 40, func(b []byte) []byte { return anyF("google.protobuf.Any", b) }))
	// As many strings as the node limit lets through, each as long as the
	// message then allows.
	n := decode.DefaultMaxNodes - 1
	escapes := bytes.Repeat(lenF(12, bytes.Repeat([]byte{0x01}, hostileSize/n-4)), n)
	return []hostileShape{
		{name: "tiny nested messages", in: fill(lenF(4))}, // list: 2 bytes per element
		{name: "tiny nested messages with a field", in: fill(lenF(4, varintF(1, 1)))},
		{name: "packed repeated scalars", in: lenF(9, bytes.Repeat([]byte{1}, hostileSize-8))},
		{name: "unpacked repeated scalars", in: fill(varintF(9, 1))},
		{name: "repeated strings", in: fill(lenF(12))},
		{name: "large map", in: fill(lenF(5))},
		{name: "large map with keys and values", in: fill(lenF(5, lenF(1, []byte("k")), lenF(2)))},
		{name: "deep nesting", in: nest(nil, 2000, func(b []byte) []byte { return lenF(10, b) })},
		{name: "Any inside Any", in: anyAny},
		{name: "many Anys", in: fill(lenF(14, anyF("grpc.testing.wire.Leaf")))},
		{name: "many unknown fields", in: fill(varintF(13, 1))},
		{name: "many unknown fields in messages", in: fill(lenF(4, varintF(13, 1)))},
		{name: "the most nodes decoded", in: bytes.Repeat(lenF(4, varintF(1, 1<<62)), n/2)},
		// Decoded, with as many bytes per node as JSON escaping inflates.
		{name: "escaped strings under the node limit", in: escapes, auditBound: true},
		{name: "one 4 MiB plain string", in: lenF(12, bytes.Repeat([]byte{'x'}, hostileSize-8)), auditBound: true},
		{name: "one 4 MiB escaped string", in: lenF(12, bytes.Repeat([]byte{0x01}, hostileSize-8)), auditBound: true},
	}
}

type hostileShape struct {
	name string
	in   []byte
	// auditBound marks a message whose cost is the audit record of its
	// whole JSON rendering (up to six bytes per byte of a string), not
	// decoding: bounded by the message's size, not by the decode limits.
	auditBound bool
}

// memPolicy reads every request it can (as a policy judging a request
// does) and denies, so that nothing reaches the upstream: the measurement
// is the proxy's alone.
const memPolicy = `package ztp

default allow := false

deny contains sprintf("%d fields", [count(input.request)]) if input.request_decoded

deny contains sprintf("not decoded: %s", [input.request_undecoded_reason]) if not input.request_decoded
`

// allocated returns the bytes the process allocates per call of f, over n
// calls after a first one (which may grow the audit file and the
// connection's buffers once).
func allocated(f func(), n int) uint64 {
	f()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(n)
}

// TestHostileMessageMemory: deciding one 4 MiB message of any shape that
// the decode limits govern costs the proxy at most 64 MiB of heap beyond
// what receiving it costs (the baseline: a message of the same size in one
// unknown field). Bytes allocated bound the peak heap from above. Client,
// proxy and backend share the process, so the bound covers the client's
// marshalling as well. Shapes whose cost is the audit record of a
// multi-MiB rendering are measured and logged, not held to the bound.
func TestHostileMessageMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 4 MiB messages")
	}
	e, backend := startWire(t, proxytest.Options{Policy: memPolicy})
	conn := e.Conn(t, proxytest.DeployerID)
	call := func(in []byte) func() {
		return func() { conn.Invoke(proxytest.Ctx(t), wireMethod, raw(in), &emptypb.Empty{}) }
	}
	base := allocated(call(lenF(13, bytes.Repeat([]byte{'x'}, hostileSize-8))), 2)
	t.Logf("baseline: %.1f MiB allocated for a 4 MiB message in one unknown field", mib(base))
	const budget = 64 << 20
	for _, s := range hostileShapes() {
		if len(s.in) > hostileSize {
			t.Fatalf("%s: %d bytes, more than %d", s.name, len(s.in), hostileSize)
		}
		err := conn.Invoke(proxytest.Ctx(t), wireMethod, raw(s.in), &emptypb.Empty{})
		if err == nil {
			t.Errorf("%s: allowed; memPolicy denies everything", s.name)
		}
		got := allocated(call(s.in), 2)
		extra := got - min(got, base)
		t.Logf("%-40s %8d bytes: %6.1f MiB allocated, %6.1f MiB beyond the baseline (%v)", s.name, len(s.in), mib(got), mib(extra), errMessage(err))
		if extra > budget && !s.auditBound {
			t.Errorf("%s: %.1f MiB beyond the baseline, want at most %d MiB", s.name, mib(extra), budget>>20)
		}
	}
	if n := backend.calls.Load(); n != 0 {
		t.Errorf("backend calls = %d, want 0", n)
	}
}

// TestHostileMessagesParallel: 20 of the most expensive messages at once,
// from one principal, keep the process's heap (proxy, client and backend)
// under 512 MiB, sampled throughout.
func TestHostileMessagesParallel(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 4 MiB messages")
	}
	e, _ := startWire(t, proxytest.Options{Policy: memPolicy})
	conn := e.Conn(t, proxytest.DeployerID)
	for _, s := range parallelShapes() {
		peak := peakHeap(func() {
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() { conn.Invoke(proxytest.Ctx(t), wireMethod, raw(s.in), &emptypb.Empty{}) })
			}
			wg.Wait()
		})
		t.Logf("20 × %s in parallel: peak heap %.1f MiB", s.name, mib(peak))
		if peak > 512<<20 && !s.auditBound {
			t.Errorf("20 × %s: peak heap %.1f MiB, want at most 512 MiB", s.name, mib(peak))
		}
	}
}

// parallelShapes are the shapes sent 20 at a time: the costliest under the
// decode limits, and over them.
func parallelShapes() []hostileShape {
	var out []hostileShape
	for _, s := range hostileShapes() {
		switch s.name {
		case "the most nodes decoded", "many Anys", "tiny nested messages", "one 4 MiB plain string":
			out = append(out, s)
		}
	}
	return out
}

// TestHostileMessagesRSS runs the real ztp-proxy binary (GOGC=400, as
// shipped) and sends it 20 hostile 4 MiB messages at once from one
// principal: its peak RSS (VmHWM) stays under 512 MiB. Under the race
// detector, which multiplies memory, the figure is only logged.
func TestHostileMessagesRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ztp-proxy and sends 4 MiB messages")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc")
	}
	backend := startWireBackend(t)
	ce := &crashEnv{bin: buildProxy(t), addr: closedAddr(t)}
	env := proxytest.Prepare(t, proxytest.Options{Listen: ce.addr, Upstream: backend.addr, Policy: memPolicy})
	proxytest.WriteProtoset(t, filepath.Join(env.Dir, "test.protoset"), wireFile(t))
	ce.config = env.Config
	p := ce.start(t)
	conn, err := grpc.NewClient(ce.addr, grpc.WithTransportCredentials(credentials.NewTLS(env.ClientTLS(t, proxytest.DeployerID))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	race := false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			race = race || s.Key == "-race" && s.Value == "true"
		}
	}
	for _, s := range parallelShapes() {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() { conn.Invoke(proxytest.Ctx(t), wireMethod, raw(s.in), &emptypb.Empty{}) })
		}
		wg.Wait()
		hwm := vmHWM(t, p.cmd.Process.Pid)
		t.Logf("after 20 × %s in parallel: ztp-proxy peak RSS %.1f MiB (race detector: %v)", s.name, mib(hwm), race)
		if hwm > 512<<20 && !race && !s.auditBound {
			t.Errorf("20 × %s: ztp-proxy peak RSS %.1f MiB, want at most 512 MiB", s.name, mib(hwm))
		}
	}
	if n := backend.calls.Load(); n != 0 {
		t.Errorf("backend calls = %d, want 0", n)
	}
}

// vmHWM is a process's peak resident set size.
func vmHWM(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// peakHeap runs f and returns the largest HeapInuse+StackInuse sampled
// meanwhile (every 2ms, and at the end).
func peakHeap(f func()) uint64 {
	runtime.GC()
	var peak atomic.Uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if v := ms.HeapInuse + ms.StackInuse; v > peak.Load() {
			peak.Store(v)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	sample()
	return peak.Load()
}

// BenchmarkHostileDecide reports the bytes allocated per 4 MiB hostile
// message through the whole proxy (B/op; client and backend share the
// process, see TestHostileMessageMemory's baseline).
func BenchmarkHostileDecide(b *testing.B) {
	e, _ := startWire(b, proxytest.Options{Policy: memPolicy})
	conn := e.Conn(b, proxytest.DeployerID)
	for _, s := range hostileShapes() {
		b.Run(strings.ReplaceAll(s.name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(s.in)))
			for b.Loop() {
				conn.Invoke(proxytest.Ctx(b), wireMethod, raw(s.in), &emptypb.Empty{}, grpc.WaitForReady(true))
			}
		})
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

func errMessage(err error) string {
	if err == nil {
		return "allowed"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}
