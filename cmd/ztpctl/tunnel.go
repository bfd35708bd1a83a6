package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/internal/grpcfwd"
)

type tunnelOptions struct {
	listen      string
	listenCert  string
	listenKey   string
	allowRemote bool
	maxMsg      int
}

func newTunnelCommand(g *globalOptions) *cobra.Command {
	o := &tunnelOptions{}
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "Serve a local port that forwards every gRPC call to the proxy as you",
		Long: `tunnel listens on a local port and forwards every gRPC call it receives to the
proxy (--server), authenticated with your certificate (--cert/--key) or token
(--token-file), for clients that cannot present either themselves (gobgp,
grpcurl without a client certificate, etcdctl without one):

  ztpctl tunnel --listen 127.0.0.1:2379 &
  etcdctl --endpoints=127.0.0.1:2379 get /app/config

Anyone who can connect to the local port acts as you, so the port is
plaintext and loopback-only by default. --listen-cert/--listen-key serve TLS
towards the local client; a non-loopback --listen needs --allow-remote.

Every call is forwarded as it is: all four RPC kinds, the client's metadata
(minus an authorization header: the call carries your identity), deadline
and cancellation; the proxy's headers, trailers and status come back
unchanged. The certificate and token files are read again for every new
connection and call, so a refreshed credential is picked up without a restart.
Each call is logged on standard error.`,
		Example: `  # etcdctl, plaintext to the tunnel, as the user of ZTP_CERT/ZTP_KEY
  ztpctl tunnel --listen 127.0.0.1:2379 &
  etcdctl --endpoints=127.0.0.1:2379 put /app/config v2

  # gobgp, with a token instead of a certificate
  ztpctl tunnel --token-file ~/.ztp/token --listen 127.0.0.1:50051 &
  gobgp global rib`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := o.checkListen(); err != nil {
				return err
			}
			lis, err := net.Listen("tcp", o.listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			return runTunnel(ctx, g, o, lis, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:7444", "local address to serve (host:port)")
	f.StringVar(&o.listenCert, "listen-cert", "", "serve TLS towards local clients with this certificate (PEM)")
	f.StringVar(&o.listenKey, "listen-key", "", "key of --listen-cert (PEM)")
	f.BoolVar(&o.allowRemote, "allow-remote", false, "allow a --listen address other than loopback: whoever reaches it acts as you")
	f.IntVar(&o.maxMsg, "max-message-bytes", 64<<20, "largest message forwarded either way (the proxy applies its own limit too)")
	return cmd
}

// checkListen refuses a listen address that other machines could reach,
// unless the user said --allow-remote: the tunnel lends the user's identity to
// whoever connects.
func (o *tunnelOptions) checkListen() error {
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", o.listen, err)
	}
	if o.allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return usageError(fmt.Errorf("--listen %s is not a loopback address: whoever reaches it would act as you; listen on 127.0.0.1 or [::1], or add --allow-remote if you mean it", o.listen))
}

// serverCreds is plaintext, or TLS with --listen-cert/--listen-key read again
// for every handshake.
func (o *tunnelOptions) serverCreds() (grpc.ServerOption, error) {
	if (o.listenCert == "") != (o.listenKey == "") {
		return nil, usageError(errors.New("--listen-cert and --listen-key must be given together"))
	}
	if o.listenCert == "" {
		return nil, nil
	}
	load := func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(o.listenCert, o.listenKey)
		if err != nil {
			return nil, fmt.Errorf("--listen-cert/--listen-key: %w", err)
		}
		return &c, nil
	}
	if _, err := load(); err != nil {
		return nil, err
	}
	return grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return load() },
	})), nil
}

// runTunnel serves lis until ctx ends, and closes it.
func runTunnel(ctx context.Context, g *globalOptions, o *tunnelOptions, lis net.Listener, log *slog.Logger) error {
	defer lis.Close()
	creds, err := o.serverCreds()
	if err != nil {
		return err
	}
	t := &tunnel{server: g.server, log: log, now: g.clock()}
	t.dial = func() (*link, error) {
		l := &link{}
		dialOpts, err := g.dialOptions(func(c *tls.Certificate) { l.notAfter.Store(c.Leaf.NotAfter.UnixNano()) })
		if err != nil {
			return nil, err
		}
		l.conn, err = grpc.NewClient(g.server, append(dialOpts,
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.maxMsg), grpc.MaxCallSendMsgSize(o.maxMsg)))...)
		if err != nil {
			return nil, fmt.Errorf("--server %s: %w", g.server, err)
		}
		return l, nil
	}
	if t.cur, err = t.dial(); err != nil {
		return err
	}
	defer t.close()

	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(grpcfwd.Codec{}),
		grpc.UnknownServiceHandler(t.handle),
		grpc.MaxRecvMsgSize(o.maxMsg),
		grpc.MaxSendMsgSize(o.maxMsg),
		// Clients such as etcdctl ping every 10s, also on idle watches; the
		// default enforcement would answer with GOAWAY and cut their streams.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	scheme := "plaintext"
	if creds != nil {
		opts = append(opts, creds)
		scheme = "TLS"
	}
	srv := grpc.NewServer(opts...)
	attrs := []any{"listen", lis.Addr().String(), "scheme", scheme, "server", g.server}
	if g.tokenFile != "" {
		attrs = append(attrs, "token_file", g.tokenFile)
	} else if c, err := (keyPair{cert: g.cert, key: g.key, now: g.clock()}).load(); err == nil {
		// Who the proxy will see, and until when (checked again per connection).
		attrs = append(attrs, "cert", g.cert, "identity", certIdentity(c.Leaf), "valid_until", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	log.Info("ztpctl tunnel listening", attrs...)
	if o.allowRemote && creds == nil {
		log.Warn("--allow-remote without --listen-cert: calls reach the tunnel in plaintext and anyone who reaches it acts as you")
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// Let short calls finish; long-lived ones (watches) would hold shutdown
	// forever, so they are cut after a moment.
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
		<-stopped
	}
	log.Info("ztpctl tunnel stopped")
	return nil
}

// tunnel forwards every call it serves to the proxy over a connection that
// carries the user's credentials.
//
// The proxy judges a certificate's expiry on every message, not only at the
// handshake, while a TLS connection keeps the certificate it started with: so
// once the certificate presented on the current connection has expired, the
// next call opens a new one (its handshake reads the certificate files again,
// picking up a renewed certificate). Calls still running on the old
// connection keep it until they end.
type tunnel struct {
	server string
	log    *slog.Logger
	now    func() time.Time
	dial   func() (*link, error)

	mu  sync.Mutex
	cur *link // new calls go here
}

// link is one connection to the proxy.
type link struct {
	conn     *grpc.ClientConn
	notAfter atomic.Int64 // of the certificate presented in its latest handshake (unix ns; 0: none, e.g. a token)
	active   int          // calls on it; under tunnel.mu
	retired  bool         // replaced: closed when active drops to 0; under tunnel.mu
}

// acquire returns the connection for a new call, replacing the current one
// when the certificate it presented has expired. It fails, naming the cause,
// when the certificate on disk is no better (every call tries again, so a
// renewal is picked up as soon as it lands).
func (t *tunnel) acquire() (*link, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if na := t.cur.notAfter.Load(); na != 0 && !t.now().Before(time.Unix(0, na)) {
		l, err := t.dial()
		if err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "ztpctl tunnel: %v", err)
		}
		old := t.cur
		old.retired = true
		if old.active == 0 {
			old.conn.Close()
		}
		t.cur = l
		t.log.Info("reconnecting: the certificate presented to the proxy expired", "expired", time.Unix(0, na).UTC().Format(time.RFC3339))
	}
	if t.cur.conn.GetState() == connectivity.TransientFailure {
		// A refreshed certificate file should not wait for the reconnect backoff.
		t.cur.conn.ResetConnectBackoff()
	}
	t.cur.active++
	return t.cur, nil
}

func (t *tunnel) release(l *link) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l.active--
	if l.retired && l.active == 0 {
		l.conn.Close()
	}
}

func (t *tunnel) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur.conn.Close()
}

func (t *tunnel) handle(_ any, ss grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "ztpctl tunnel: no method on stream")
	}
	start := time.Now()
	err := t.forward(ss, method)
	attrs := []any{"method", method, "code", status.Code(err).String(), "duration", time.Since(start).Round(time.Microsecond)}
	if p, ok := peer.FromContext(ss.Context()); ok {
		attrs = append(attrs, "client", p.Addr.String())
	}
	if err != nil {
		attrs = append(attrs, "message", status.Convert(err).Message())
	}
	t.log.Info("call", attrs...)
	return err
}

func (t *tunnel) forward(ss grpc.ServerStream, method string) error {
	ctx, cancel := context.WithCancel(ss.Context()) // carries the client's deadline
	defer cancel()
	outCtx := metadata.NewOutgoingContext(ctx, tunnelMetadata(ss.Context()))
	l, err := t.acquire()
	if err != nil {
		return err
	}
	defer t.release(l)
	cs, err := l.conn.NewStream(outCtx, grpcfwd.StreamDesc, method, grpc.ForceCodecV2(grpcfwd.Codec{}))
	if err != nil {
		st := status.Convert(err)
		return status.Errorf(st.Code(), "ztpctl tunnel: %s: %s", t.server, st.Message())
	}
	return grpcfwd.Splice(ss, cs, nil, false, cancel)
}

// tunnelMetadata is the client's metadata as the proxy should see it: without
// HTTP/2 pseudo-headers, and without an authorization header, since the call
// carries the tunnel user's identity and no other (a token, when used, is
// attached by the connection's call credentials).
func tunnelMetadata(ctx context.Context) metadata.MD {
	in, _ := metadata.FromIncomingContext(ctx)
	out := make(metadata.MD, len(in))
	for k, v := range in {
		if k == "authorization" || strings.HasPrefix(k, ":") {
			continue
		}
		out[k] = v
	}
	return out
}

// certIdentity is the name a certificate speaks for: its first URI SAN (a
// SPIFFE ID), else its common name.
func certIdentity(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return c.Subject.CommonName
}
