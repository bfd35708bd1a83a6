package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// globalOptions are the connection flags shared by every command that talks to a
// running proxy.
type globalOptions struct {
	server     string
	serverName string
	cacert     string
	cert       string
	key        string
	tokenFile  string
	output     string
	timeout    time.Duration
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "ztpctl",
		Short: "Command line for ztp: break-glass, audit, policy",
		Long: `ztpctl talks to a running ztp-proxy's control API (break-glass, audit export,
policy version) and works offline on policies and audit files.

Connection defaults come from ZTP_SERVER, ZTP_CACERT, ZTP_CERT, ZTP_KEY and
ZTP_TOKEN_FILE.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVar(&g.server, "server", envOr("ZTP_SERVER", "127.0.0.1:7443"), "proxy address (host:port)")
	f.StringVar(&g.serverName, "server-name", "", "name to verify in the proxy's certificate (default: the host of --server)")
	f.StringVar(&g.cacert, "cacert", os.Getenv("ZTP_CACERT"), "CA certificate that signed the proxy's certificate (PEM)")
	f.StringVar(&g.cert, "cert", os.Getenv("ZTP_CERT"), "client certificate (PEM)")
	f.StringVar(&g.key, "key", os.Getenv("ZTP_KEY"), "client key (PEM)")
	f.StringVar(&g.tokenFile, "token-file", os.Getenv("ZTP_TOKEN_FILE"), "file holding a JWT bearer token (instead of --cert/--key)")
	f.StringVarP(&g.output, "output", "o", "text", "output format: text | json")
	f.DurationVar(&g.timeout, "timeout", 30*time.Second, "timeout of one control-API call")
	root.AddCommand(newPolicyCommand(g), newAuditCommand(g), newBreakglassCommand(g), newRateLimitCommand(g), newCertsCommand(g))
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// dial connects to the proxy's control API with the configured credentials.
func (g *globalOptions) dial() (*grpc.ClientConn, error) {
	if (g.cert == "") != (g.key == "") {
		return nil, errors.New("--cert and --key must be given together")
	}
	if g.cacert == "" {
		return nil, errors.New("--cacert (or ZTP_CACERT) is required to verify the proxy")
	}
	pem, err := os.ReadFile(g.cacert)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cacert %s: no PEM certificate found", g.cacert)
	}
	name := g.serverName
	if name == "" {
		host, _, err := net.SplitHostPort(g.server)
		if err != nil {
			return nil, fmt.Errorf("--server %q: %w", g.server, err)
		}
		name = host
	}
	tc := &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}
	opts := []grpc.DialOption{}
	switch {
	case g.tokenFile != "":
		tok, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(strings.TrimSpace(string(tok)))))
	case g.cert != "":
		c, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	default:
		return nil, errors.New("no credentials: give --cert and --key (or ZTP_CERT/ZTP_KEY), or --token-file")
	}
	opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		// An audit export chunk carries whole records, and one record of a maximal
		// request is larger than gRPC's default 4 MiB receive limit.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	return grpc.NewClient(g.server, opts...)
}

func (g *globalOptions) context(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, g.timeout)
}

// callProxy makes one control-API call: it dials the proxy, runs call with a
// context bounded by --timeout and closes the connection. A failed call comes
// back as rpcError(what, err), a failed dial as it is.
func callProxy[T any](cmd *cobra.Command, g *globalOptions, what string, call func(context.Context, *grpc.ClientConn) (T, error)) (T, error) {
	var zero T
	conn, err := g.dial()
	if err != nil {
		return zero, err
	}
	defer conn.Close()
	ctx, cancel := g.context(cmd.Context())
	defer cancel()
	resp, err := call(ctx, conn)
	if err != nil {
		return zero, rpcError(what, err)
	}
	return resp, nil
}

// bearer sends a JWT as "authorization: Bearer …" (over TLS only).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// rpcError turns a gRPC error into a one-line message naming the code.
func rpcError(what string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %s: %s", what, st.Code(), st.Message())
}

func (g *globalOptions) checkOutput() error {
	if g.output != "text" && g.output != "json" {
		return fmt.Errorf("--output must be text or json, got %q", g.output)
	}
	return nil
}
