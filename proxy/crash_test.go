package proxy_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// The tests in this file run the real ztp-proxy binary as a subprocess and
// do to it what a machine does to a daemon: SIGKILL under load, a disk that
// fills up. What the audit log promises must hold afterwards.

// recordingBackend is the upstream: it remembers the payload of every
// UnaryCall that reached it, the ground truth the audit log is checked
// against.
type recordingBackend struct {
	testgrpc.UnimplementedTestServiceServer
	mu       sync.Mutex
	received map[string]bool
	addr     string
}

func (b *recordingBackend) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.mu.Lock()
	b.received[string(req.GetPayload().GetBody())] = true
	b.mu.Unlock()
	return &testgrpc.SimpleResponse{}, nil
}

func (b *recordingBackend) snapshot() map[string]bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[string]bool, len(b.received))
	for k := range b.received {
		m[k] = true
	}
	return m
}

func startRecordingBackend(t *testing.T) *recordingBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recordingBackend{received: map[string]bool{}, addr: lis.Addr().String()}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, b)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// buildProxy builds cmd/ztp-proxy into a temporary directory, with the race
// detector when this test binary has it (then every package is already in
// the build cache and only the link remains).
func buildProxy(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test builds the proxy binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "ztp-proxy")
	args := []string{"build", "-o", bin}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	cmd := exec.Command(goBin, append(args, "github.com/ztp-dev/ztp/cmd/ztp-proxy")...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ztp-proxy: %v\n%s", err, out)
	}
	return bin
}

// crashEnv is a config directory for the proxy binary (a Prepared
// proxytest.Env) with ztp.yaml on a fixed port, so that restarts listen where
// clients expect them, and a signing key for checkpoints.
type crashEnv struct {
	dir, config, auditPath, addr string
	bin                          string
	backend                      *recordingBackend
	client                       *tls.Config
	pub                          ed25519.PublicKey // verifies the proxy's checkpoints
}

func newCrashEnv(t *testing.T) *crashEnv {
	t.Helper()
	e := &crashEnv{bin: buildProxy(t), backend: startRecordingBackend(t), addr: closedAddr(t)}
	env := proxytest.Prepare(t, proxytest.Options{
		Listen:   e.addr,
		Upstream: e.backend.addr,
		Audit:    "  signing_key: audit-ed25519.pem\n  checkpoint_interval: 1s\n",
	})
	e.dir, e.config, e.auditPath = env.Dir, env.Config, env.AuditFile
	e.client = env.ClientTLS(t, proxytest.DeployerID)
	priv, pub, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "audit-ed25519.pem"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if e.pub, err = audit.ParsePublicKey(pub); err != nil {
		t.Fatal(err)
	}
	return e
}

// proxyProc is one run of the proxy binary.
type proxyProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited; then err is its exit
	err  error
}

// start runs the proxy and returns once it logged that it is serving.
func (e *crashEnv) start(t *testing.T) *proxyProc {
	t.Helper()
	cmd := exec.Command(e.bin, "serve", "--config", e.config, "--drain-timeout", "2s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proxyProc{cmd: cmd, done: make(chan struct{})}
	serving := make(chan struct{})
	var logTail strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			logMu.Lock()
			logTail.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.Contains(sc.Text(), "msg=serving") {
				once.Do(func() { close(serving) })
			}
		}
		io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-serving:
		return p
	case <-p.done:
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("ztp-proxy exited before serving: %v\n%s", p.err, logTail.String())
	case <-time.After(30 * time.Second):
		t.Fatal("ztp-proxy did not start serving within 30s")
	}
	return nil
}

func (p *proxyProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// stop sends SIGTERM and returns the exit status.
func (p *proxyProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
	return p.err
}

func (e *crashEnv) dial(t *testing.T) (testgrpc.TestServiceClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(e.client)))
	if err != nil {
		t.Fatal(err)
	}
	return testgrpc.NewTestServiceClient(conn), func() { conn.Close() }
}

// auditedPayloads checks the stopped proxy's file — bbolt's page
// consistency, the whole hash chain, and that it extends the latest
// checkpoint, whose signature verifies — and returns the payloads of the
// allowed decision records, the record count and the checkpoint's size.
func (e *crashEnv) auditedPayloads(t *testing.T) (audited map[string]bool, records, checkpointed uint64) {
	t.Helper()
	ctx := proxytest.Ctx(t)
	r, err := audit.OpenReader(e.auditPath, 0)
	if err != nil {
		t.Fatalf("OpenReader after the proxy died: %v", err)
	}
	defer r.Close()
	if err := r.Check(); err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
	res, err := r.Verify(ctx)
	if err != nil {
		t.Fatalf("Verify: %+v, %v", res, err)
	}
	switch cp, err := r.LatestCheckpoint(); {
	case errors.Is(err, audit.ErrNoCheckpoint):
	case err != nil:
		t.Fatalf("LatestCheckpoint: %v", err)
	default:
		if _, err := audit.OpenCheckpoint(cp.Signed, e.pub); err != nil {
			t.Fatalf("stored checkpoint: %v", err)
		}
		if res, err := r.VerifyExtends(ctx, cp); err != nil {
			t.Fatalf("the log does not extend its own checkpoint of %d records: %+v, %v", cp.Size, res, err)
		}
		checkpointed = cp.Size
	}
	audited = map[string]bool{}
	err = r.Scan(ctx, 1, func(rec *audit.Record) error {
		if rec.Type != audit.TypeRequest || rec.Method != "/grpc.testing.TestService/UnaryCall" || rec.Decision != audit.DecisionAllow {
			return nil
		}
		var req struct {
			Payload struct {
				Body []byte `json:"body"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(rec.Request, &req); err != nil {
			return fmt.Errorf("seq %d: %w", rec.Seq, err)
		}
		audited[string(req.Payload.Body)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return audited, res.Records, checkpointed
}

// crashRounds is the number of SIGKILLs: small by default so that make test
// stays fast; ZTP_CRASH_ROUNDS=200 for a long run.
func crashRounds(t *testing.T) int {
	if s := os.Getenv("ZTP_CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("ZTP_CRASH_ROUNDS=%q: want a positive integer", s)
		}
		return n
	}
	return 4
}

// TestCrashSafety kills the proxy with SIGKILL at random moments while 16
// clients call through it, restarts it, and checks after every kill that
// every call the backend received has its decision record, that the chain
// verifies and that bbolt's consistency check passes.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the proxy binary")
	}
	const workers = 16
	rounds := crashRounds(t)
	seed := uint64(time.Now().UnixNano())
	rng := mrand.New(mrand.NewPCG(seed, 0))
	t.Logf("seed %d, %d rounds, %d concurrent clients", seed, rounds, workers)
	e := newCrashEnv(t)
	var attempted, succeeded, inFlightAtKill atomic.Int64
	for round := range rounds {
		p := e.start(t)
		c, closeConn := e.dial(t)
		// Kill when a random number of calls has completed: calls of the
		// other clients are then at random points of the pipeline.
		target := int64(20 + rng.IntN(300))
		var completed, inFlight atomic.Int64
		killNow := make(chan struct{})
		var killOnce sync.Once
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := 0; ctx.Err() == nil; i++ {
					body := fmt.Sprintf("r%d-w%d-c%d", round, w, i)
					attempted.Add(1)
					inFlight.Add(1)
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					_, err := c.UnaryCall(cctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}})
					cancel()
					inFlight.Add(-1)
					if err != nil {
						return // the proxy is gone
					}
					succeeded.Add(1)
					if completed.Add(1) == target {
						killOnce.Do(func() { close(killNow) })
					}
				}
			})
		}
		select {
		case <-killNow:
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: %d of %d calls completed in 60s", round, completed.Load(), target)
		}
		inFlightAtKill.Add(inFlight.Load())
		p.kill(t)
		stop()
		wg.Wait()
		closeConn()

		audited, records, _ := e.auditedPayloads(t)
		received := e.backend.snapshot()
		missing := 0
		for body := range received {
			if !audited[body] {
				missing++
				if missing <= 5 {
					t.Errorf("round %d: backend received %q, but no decision record says so", round, body)
				}
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d calls reached the backend unaudited", round, missing)
		}
		if round == rounds-1 {
			t.Logf("after %d SIGKILLs: %d calls attempted, %d completed, %d in flight at the kills; %d reached the backend (%d of them while their client saw the kill), all audited; %d records verify, bbolt check ok",
				rounds, attempted.Load(), succeeded.Load(), inFlightAtKill.Load(), len(received), int64(len(received))-succeeded.Load(), records)
		}
	}
	// And the log still takes appends and shuts down cleanly.
	p := e.start(t)
	c, closeConn := e.dial(t)
	defer closeConn()
	if _, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("after")}}); err != nil {
		t.Fatalf("call after the crashes: %v", err)
	}
	if err := p.stop(); err != nil {
		t.Errorf("ztp-proxy after SIGTERM: %v, want exit 0", err)
	}
	audited, records, checkpointed := e.auditedPayloads(t)
	if !audited["after"] {
		t.Errorf("the call after the crashes has no decision record")
	}
	// A clean stop signs the final head, the stop record included.
	if checkpointed != records {
		t.Errorf("after SIGTERM the latest checkpoint covers %d of %d records, want all", checkpointed, records)
	}
}

// setFileSizeLimit sets RLIMIT_FSIZE of process pid (prlimit(2)): writes
// beyond the limit then fail with EFBIG, as on a full disk.
func setFileSizeLimit(pid int, limit uint64) error {
	lim := syscall.Rlimit{Cur: limit, Max: ^uint64(0)}
	_, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_FSIZE), uintptr(unsafe.Pointer(&lim)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// TestAuditDiskFullRecovers fills the audit file's "disk" under a serving
// proxy: calls fail UNAVAILABLE and reach nothing, and once writes succeed
// again the proxy serves again by itself, with an intact log.
func TestAuditDiskFullRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the proxy binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("needs prlimit(2)")
	}
	e := newCrashEnv(t)
	p := e.start(t)
	c, closeConn := e.dial(t)
	defer closeConn()
	call := func(body string) error {
		_, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(body)}})
		return err
	}
	if err := call("before"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := setFileSizeLimit(p.cmd.Process.Pid, uint64(fi.Size())); err != nil {
		t.Skipf("prlimit: %v", err)
	}
	// The file cannot grow: once its free pages are used up, commits fail.
	var refused []string
	for i := 0; len(refused) < 20; i++ {
		if i == 100000 {
			t.Fatalf("100000 calls succeeded with the audit file capped at %d bytes", fi.Size())
		}
		body := fmt.Sprintf("full-%d", i)
		err := call(body)
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable || !strings.Contains(status.Convert(err).Message(), "audit") {
			t.Fatalf("call with the disk full = %v, want UNAVAILABLE naming the audit log", err)
		}
		refused = append(refused, body)
	}
	received := e.backend.snapshot()
	for _, body := range refused {
		if received[body] {
			t.Errorf("call %q was refused UNAVAILABLE but reached the backend", body)
		}
	}
	// Space again: the very next call goes through, without a restart.
	if err := setFileSizeLimit(p.cmd.Process.Pid, ^uint64(0)); err != nil {
		t.Fatal(err)
	}
	if err := call("after"); err != nil {
		t.Fatalf("first call after the disk has space again = %v, want it served", err)
	}
	if err := p.stop(); err != nil {
		t.Errorf("ztp-proxy after SIGTERM: %v, want exit 0", err)
	}
	audited, records, _ := e.auditedPayloads(t)
	for body := range e.backend.snapshot() {
		if !audited[body] {
			t.Errorf("backend received %q without a decision record", body)
		}
	}
	if !audited["after"] {
		t.Errorf("the call after recovery has no decision record")
	}
	t.Logf("%d calls refused while the file could not grow, none forwarded; recovered; %d records verify", len(refused), records)
}

// TestBadSigningKeyRefusesStart: a signing key that is not an Ed25519
// PKCS#8 key stops start-up with a message naming the key, instead of a
// proxy that silently signs nothing.
func TestBadSigningKeyRefusesStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the proxy binary")
	}
	e := newCrashEnv(t)
	if err := os.WriteFile(filepath.Join(e.dir, "audit-ed25519.pem"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.bin, "serve", "--config", e.config)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "audit.signing_key") || !strings.Contains(string(out), "unusable key") {
		t.Errorf("ztp-proxy serve with a bad signing key = %v\n%s\nwant a start-up error naming audit.signing_key", err, out)
	}
}
