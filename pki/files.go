package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	certFileMode = 0o644
	keyFileMode  = 0o600
)

// LoadCA reads a CA certificate and its private key from PEM files, e.g.
// ones written by (*CA).WriteFiles or by openssl. The key may be PKCS#8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
// The certificate must be a CA allowed to sign certificates, and the key
// must be its own. Only WithClock is meaningful among opts.
func LoadCA(certPEMFile, keyPEMFile string, opts ...Option) (*CA, error) {
	o := buildOptions(opts)
	certPEM, err := os.ReadFile(certPEMFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPEMFile)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	cert, der, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPEMFile, err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPEMFile, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%s: %w: basic constraints do not allow signing", certPEMFile, ErrNotCA)
	}
	// An absent key usage extension (0) is tolerated: openssl's default CA
	// profile omits it and Go's verifier does not require it.
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %w: key usage lacks certSign", certPEMFile, ErrNotCA)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s and %s: %w", certPEMFile, keyPEMFile, ErrKeyMismatch)
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		now:     o.now,
	}, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, []byte, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, nil, fmt.Errorf("%w: no CERTIFICATE block", ErrInvalidPEM)
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalidPEM, err)
		}
		return cert, block.Bytes, nil
	}
}

func parseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%w: no private key block", ErrInvalidPEM)
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			// Skip e.g. "EC PARAMETERS", which openssl writes first.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidPEM, block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: %T cannot sign", ErrInvalidPEM, key)
		}
		return signer, nil
	}
}

// WriteFiles writes a leaf as dir/name.pem (mode 0644) and
// dir/name-key.pem (mode 0600), creating dir if needed. Existing files are
// replaced atomically.
func WriteFiles(dir string, name string, l *Leaf) error {
	if l == nil || len(l.CertPEM) == 0 || len(l.KeyPEM) == 0 {
		return fmt.Errorf("%w: leaf has no certificate or key", ErrInvalidOptions)
	}
	return writePair(dir, name, l.CertPEM, l.KeyPEM)
}

// WriteFiles writes the CA as dir/name.pem (mode 0644) and
// dir/name-key.pem (mode 0600), the layout LoadCA reads back.
func (ca *CA) WriteFiles(dir, name string) error {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	return writePair(dir, name, ca.CertPEM, keyPEM)
}

func writePair(dir, name string, certPEM, keyPEM []byte) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || filepath.Base(name) != name {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pki: create %s: %w", dir, err)
	}
	// The key goes first: a certificate file without its key is confusing,
	// the reverse is merely incomplete.
	if err := writeAtomic(filepath.Join(dir, name+"-key.pem"), keyPEM, keyFileMode); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, name+".pem"), certPEM, certFileMode)
}

// writeAtomic writes to a temporary file in the same directory and renames
// it into place, so readers never see a partial file. CreateTemp makes the
// file 0600 from the start, so key bytes are never world-readable even
// briefly; the final mode is set with Chmod, which the umask does not touch.
func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("pki: chmod %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("pki: sync %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("pki: close %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: rename into %s: %w", path, err)
	}
	return nil
}
