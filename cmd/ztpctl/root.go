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
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/internal/version"
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
	now        func() time.Time // judges the validity of the user's certificate; nil: time.Now
}

func (g *globalOptions) clock() func() time.Time {
	if g.now != nil {
		return g.now
	}
	return time.Now
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "ztpctl",
		Short: "Command line for ztp: break-glass, audit, policy",
		Long: `ztpctl talks to a running ztp-proxy's control API (break-glass, audit export,
policy version) and works offline on policies and audit files.

Connection defaults come from ZTP_SERVER, ZTP_CACERT, ZTP_CERT, ZTP_KEY and
ZTP_TOKEN_FILE.

Exit status:
  0  success
  1  error: the command could not do its work (proxy unreachable, file missing)
  2  usage: unknown command, unknown flag, bad flag value or argument count
  3  integrity: audit verify reports FAIL (broken chain, damaged file), or
     policy eval --fail-on saw a verdict it was told to fail on`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(), // --version; "ztpctl version" also asks the proxy
	}
	root.SetVersionTemplate("ztpctl {{.Version}}\n")
	f := root.PersistentFlags()
	f.StringVar(&g.server, "server", envOr("ZTP_SERVER", "127.0.0.1:7443"), "proxy address (host:port)")
	f.StringVar(&g.serverName, "server-name", "", "name to verify in the proxy's certificate (default: the host of --server)")
	f.StringVar(&g.cacert, "cacert", os.Getenv("ZTP_CACERT"), "CA certificate that signed the proxy's certificate (PEM)")
	f.StringVar(&g.cert, "cert", os.Getenv("ZTP_CERT"), "client certificate (PEM)")
	f.StringVar(&g.key, "key", os.Getenv("ZTP_KEY"), "client key (PEM)")
	f.StringVar(&g.tokenFile, "token-file", os.Getenv("ZTP_TOKEN_FILE"), "file holding a JWT bearer token (instead of --cert/--key)")
	enumFlag(f, &g.output, "output", "o", "text", []string{"text", "json"}, "output format")
	f.DurationVar(&g.timeout, "timeout", 30*time.Second, "timeout of one control-API call")
	root.AddCommand(newPolicyCommand(g), newAuditCommand(g), newBreakglassCommand(g), newRateLimitCommand(g), newCertsCommand(g), newTunnelCommand(g), newVersionCommand(g))
	enforceUsageRules(root)
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
	opts, err := g.dialOptions(nil)
	if err != nil {
		return nil, err
	}
	// An audit export chunk carries whole records, and one record of a maximal
	// request is larger than gRPC's default 4 MiB receive limit.
	opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	return grpc.NewClient(g.server, opts...)
}

// dialOptions are the transport and call credentials of every connection to
// the proxy: its CA (--cacert), and the user's certificate (--cert/--key) or
// bearer token (--token-file). The credential files are checked here, so that
// a command fails at once with a message naming the file, and read again for
// every TLS handshake (certificate) or call (token): a long-running command
// (tunnel, audit export --follow) picks up a credential refreshed on disk.
//
// presented, when not nil, is told of every certificate handed to the proxy.
func (g *globalOptions) dialOptions(presented func(*tls.Certificate)) ([]grpc.DialOption, error) {
	if (g.cert == "") != (g.key == "") {
		return nil, usageError(errors.New("--cert and --key must be given together"))
	}
	if g.cacert == "" {
		return nil, usageError(errors.New("--cacert (or ZTP_CACERT) is required to verify the proxy"))
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
		tf := tokenFile{path: g.tokenFile}
		if _, err := tf.read(); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tf))
	case g.cert != "":
		kp := keyPair{cert: g.cert, key: g.key, now: g.clock()}
		if _, err := kp.load(); err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := kp.load()
			if err == nil && presented != nil {
				presented(c)
			}
			return c, err
		}
	default:
		return nil, usageError(errors.New("no credentials: give --cert and --key (or ZTP_CERT/ZTP_KEY), or --token-file"))
	}
	return append(opts, grpc.WithTransportCredentials(credentials.NewTLS(tc))), nil
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
