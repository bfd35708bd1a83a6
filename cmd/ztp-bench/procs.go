package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// Roles a copy of this program plays when started with the role as its first
// argument. A role prints "listening ADDR" on standard output once it serves,
// and stops when its standard input ends, so that it never outlives the run.
const (
	roleBackend = "serve-backend"
	roleBare    = "serve-bare"
)

// runRole runs role with args when role names one; ok is false otherwise.
func runRole(role string, args []string) (code int, ok bool) {
	var err error
	switch role {
	case roleBackend:
		err = serveBackend(args)
	case roleBare:
		err = serveBare(args)
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ztp-bench %s: %v\n", role, err)
		return 1, true
	}
	return 0, true
}

// serveBackend serves proxytest's Backend, the upstream every proxy test uses:
// it echoes the payload and sets a header and a trailer, which the proxies
// must carry back.
func serveBackend(args []string) error {
	fs := flag.NewFlagSet(roleBackend, flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, &proxytest.Backend{})
	return serveUntilStdinEnds(s)
}

// serveBare serves proxy.NewBareForwarder in front of -upstream, with the
// proxy's mTLS when -cert is given.
func serveBare(args []string) error {
	fs := flag.NewFlagSet(roleBare, flag.ContinueOnError)
	upstream := fs.String("upstream", "", "backend address")
	cert := fs.String("cert", "", "server certificate (PEM); empty: plaintext")
	key := fs.String("key", "", "server key (PEM)")
	clientCA := fs.String("client-ca", "", "CA of the client certificates (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var opts []grpc.ServerOption
	if *cert != "" {
		creds, err := mtlsServerCreds(*cert, *key, *clientCA)
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	// Dialled as ztp-proxy dials its upstreams: no retries, no service config.
	up, err := grpc.NewClient(*upstream, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry(), grpc.WithDisableServiceConfig())
	if err != nil {
		return err
	}
	defer up.Close()
	return serveUntilStdinEnds(proxy.NewBareForwarder(up, opts...))
}

// mtlsServerCreds is the TLS the proxy's listener uses (proxy/server.go):
// client certificates required and verified.
func mtlsServerCreds(certFile, keyFile, caFile string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}), nil
}

func serveUntilStdinEnds(s *grpc.Server) error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lis) }()
	fmt.Printf("listening %s\n", lis.Addr())
	io.Copy(io.Discard, os.Stdin)
	s.Stop()
	return <-served
}

// child is a process the run started: a role of this program or ztp-proxy.
type child struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.Closer // roles stop when it is closed; nil for ztp-proxy
	logFile string    // its standard error
	addr    string    // where it serves gRPC
	exited  chan struct{}
	err     error // Wait's result, once exited is closed
}

// startRole starts this program's executable as role and waits for its address.
func startRole(ctx context.Context, dir, name, role string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{role}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c, err := startChild(name, cmd, dir)
	if err != nil {
		return nil, err
	}
	c.stdin = stdin
	lines := make(chan string, 1)
	go func() {
		// Only the first line matters; the rest (none) is drained so that the
		// child never blocks on a full pipe.
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, r)
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
		if !ok {
			c.stop()
			return nil, fmt.Errorf("%s did not start: %s", name, c.logTail())
		}
		c.addr = addr
		return c, nil
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

// startChild starts cmd with its standard error in dir/name.log.
func startChild(name string, cmd *exec.Cmd, dir string) (*child, error) {
	c := &child{name: name, cmd: cmd, logFile: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	log, err := os.Create(c.logFile)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	cmd.Stderr = log
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// startProxy runs the ztp-proxy binary on the config in dir and waits until it
// serves and reports ready. It returns the process and its metrics address.
func startProxy(ctx context.Context, bin, dir string) (*child, string, error) {
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "ztp.yaml"), "--drain-timeout", "2s")
	c, err := startChild("ztp-proxy", cmd, dir)
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*child, string, error) {
		c.stop()
		return nil, "", fmt.Errorf("ztp-proxy: %w; its log ends:\n%s", err, c.logTail())
	}
	// The proxy listens on port 0 and logs (as JSON, per ztp.yaml) where:
	// no port is picked here that another process could take meanwhile.
	var metricsAddr string
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for c.addr == "" || metricsAddr == "" {
		select {
		case <-c.exited:
			return fail(fmt.Errorf("exited: %v", c.err))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-deadline:
			return fail(fmt.Errorf("no listen address logged within 30s"))
		case <-tick.C:
		}
		c.addr, metricsAddr = proxyAddrs(c.logFile)
	}
	for {
		if readyz(ctx, metricsAddr) == nil {
			return c, metricsAddr, nil
		}
		select {
		case <-c.exited:
			return fail(fmt.Errorf("exited: %v", c.err))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-deadline:
			return fail(fmt.Errorf("not ready within 30s: %v", readyz(ctx, metricsAddr)))
		case <-tick.C:
		}
	}
}

// proxyAddrs reads the gRPC and metrics addresses from the proxy's JSON log.
func proxyAddrs(logFile string) (grpcAddr, metricsAddr string) {
	b, _ := os.ReadFile(logFile)
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		var l struct{ Msg, Listen string }
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		switch l.Msg {
		case "serving":
			grpcAddr = l.Listen
		case "metrics endpoint":
			metricsAddr = l.Listen
		}
	}
	return grpcAddr, metricsAddr
}

// stop ends the child: a role by closing its input, ztp-proxy by SIGTERM (it
// drains and closes its audit log); either is killed if it takes over 10s.
func (c *child) stop() error {
	if c.stdin != nil {
		c.stdin.Close()
	} else {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("%s: killed after 10s", c.name)
	}
	if c.err != nil {
		return fmt.Errorf("%s: %w; its log ends:\n%s", c.name, c.err, c.logTail())
	}
	return nil
}

// logTail is the end of the child's standard error, for error messages.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logFile)
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}
