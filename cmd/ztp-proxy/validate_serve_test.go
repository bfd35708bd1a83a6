package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// TestValidateAgreesWithServe: for each broken config, validate exits with
// the very message serve exits with, and serve exits before it listens (the
// config's listen address is taken, so serving would fail differently).
func TestValidateAgreesWithServe(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts proxytest.Options
		// setup writes the broken file into the Env's directory.
		setup func(t *testing.T, e *proxytest.Env)
		want  string
	}{
		{
			name: "signing key is not an ed25519 PEM private key",
			opts: proxytest.Options{Audit: "  signing_key: signing.pem\n"},
			setup: func(t *testing.T, e *proxytest.Env) {
				// A certificate where the key belongs: a file that exists and is PEM.
				write(t, filepath.Join(e.Dir, "signing.pem"), e.CA.CertPEM)
			},
			want: "audit.signing_key: ",
		},
		{
			name: "signing key is an ECDSA key",
			opts: proxytest.Options{Audit: "  signing_key: proxy-key.pem\n"},
			want: "is not an Ed25519 private key",
		},
		{
			name: "client_ca is a leaf",
			setup: func(t *testing.T, e *proxytest.Env) {
				b, err := os.ReadFile(filepath.Join(e.Dir, "proxy.pem"))
				if err != nil {
					t.Fatal(err)
				}
				write(t, e.CAFile, b)
			},
			want: "tls.client_ca: ca.pem holds no CA certificate",
		},
		{
			name:  "upstream tls.ca is a leaf",
			opts:  proxytest.Options{Upstream: "127.0.0.1:1", NoDescriptors: true},
			setup: nil, // the config is rewritten below
			want:  "upstreams[0].tls.ca: proxy.pem holds no CA certificate",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Serving would fail on this taken address, with another message.
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			tc.opts.Listen = taken.Addr().String()
			e := proxytest.Prepare(t, tc.opts)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			if strings.HasPrefix(tc.name, "upstream") {
				e.RewriteConfig(t, func(s string) string {
					return strings.Replace(s, "tls: { insecure: true }", "tls: { ca: proxy.pem, server_name: localhost }", 1)
				})
			}
			validateErr := run(t, "validate", "--config", e.Config)
			serveErr := run(t, "serve", "--config", e.Config)
			if validateErr == "" {
				t.Fatalf("validate succeeded, want %q (serve: %q)", tc.want, serveErr)
			}
			if !strings.Contains(validateErr, tc.want) {
				t.Errorf("validate = %q, want it to contain %q", validateErr, tc.want)
			}
			if strings.Contains(validateErr, "\n") {
				t.Errorf("validate = %q, want one line", validateErr)
			}
			if serveErr != validateErr {
				t.Errorf("serve = %q\nvalidate = %q\nwant the same message", serveErr, validateErr)
			}
		})
	}
}

// run executes ztp-proxy with args and returns its error message, "" on success.
func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		return err.Error()
	}
	return ""
}

func write(t *testing.T, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
