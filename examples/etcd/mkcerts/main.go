// Command mkcerts writes throw-away certificates for trying the etcd example by hand: a
// development CA, the proxy's server certificate for 127.0.0.1 and localhost, and client
// certificates for the example's two principals, the automation
// spiffe://example.org/ns/prod/sa/deployer and the human spiffe://example.org/user/alice.
//
//	go run ./examples/etcd/mkcerts -dir examples/etcd/certs
//
// It stands in for `ztpctl certs`, which is not written yet. The certificates are valid
// for 24 hours and the CA key is written next to them: they are for a laptop, not for
// production.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/ztp-dev/ztp/pki"
)

func main() {
	dir := flag.String("dir", "certs", "directory to write the PEM files to (created if missing)")
	force := flag.Bool("force", false, "replace certificates already in -dir")
	flag.Parse()
	if err := run(*dir, *force, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mkcerts:", err)
		os.Exit(1)
	}
}

func run(dir string, force bool, out io.Writer) error {
	// A second run would silently replace the CA that a running proxy trusts, and every
	// client certificate with it; make that a decision.
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err == nil && !force {
		return fmt.Errorf("%s already holds a CA (ca.pem); use -force to replace it", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ca, err := pki.NewCA("ztp etcd example CA")
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(dir, "ca"); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\n", filepath.Join(dir, "ca.pem"))
	// The certificates the example's ztp.yaml and its etcdctl commands name.
	leaves := []struct {
		name string
		opts pki.LeafOptions
	}{
		{"proxy", pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true}},
		{"deployer", pki.LeafOptions{CommonName: "deployer", URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true}},
		{"alice", pki.LeafOptions{CommonName: "alice", URIs: []string{"spiffe://example.org/user/alice"}, Client: true}},
	}
	for _, l := range leaves {
		leaf, err := ca.Issue(l.opts)
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		if err := pki.WriteFiles(dir, l.name, leaf); err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		fmt.Fprintf(out, "%s\n", filepath.Join(dir, l.name+".pem"))
	}
	return nil
}
