package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

const (
	// defaultCAValidity is long because a dev CA that expires in the middle
	// of someone's evaluation is worse than useless; it is not a production CA.
	defaultCAValidity = 10 * 365 * 24 * time.Hour
	// defaultLeafValidity keeps leaves short-lived, as real SVIDs are.
	defaultLeafValidity = 24 * time.Hour
	// backdate absorbs clock skew between the machine that mints a
	// certificate and the one that verifies it.
	backdate = time.Minute
)

// serialLimit is 2^128: serials are 128 random bits (RFC 5280 allows up to
// 20 octets; CA/B Forum asks for at least 64 bits of entropy).
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// CA is a certificate authority that can issue leaf certificates.
// Its exported fields are read-only once the CA is in use.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte

	now func() time.Time
}

// Option configures NewCA and LoadCA.
type Option func(*options)

type options struct {
	validity time.Duration
	now      func() time.Time
}

// WithValidity sets how long a new CA certificate is valid (default 10
// years). LoadCA ignores it: a loaded certificate has its own validity.
func WithValidity(d time.Duration) Option {
	return func(o *options) { o.validity = d }
}

// WithClock sets the clock used for the CA's own validity and for the
// default validity window of the leaves it issues (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

func buildOptions(opts []Option) options {
	o := options{validity: defaultCAValidity, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// NewCA creates a self-signed CA with a fresh ECDSA P-256 key.
func NewCA(commonName string, opts ...Option) (*CA, error) {
	o := buildOptions(opts)
	if commonName == "" {
		return nil, fmt.Errorf("%w: CA common name is empty", ErrInvalidOptions)
	}
	if o.validity <= 0 {
		return nil, fmt.Errorf("%w: CA validity %v is not positive", ErrInvalidOptions, o.validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(o.validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// A dev CA signs leaves directly; refusing intermediates limits what
		// a leaked dev key can be stretched to.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CA certificate: %w", err)
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		now:     o.now,
	}, nil
}

// LeafOptions describes a leaf certificate to issue.
type LeafOptions struct {
	CommonName string
	URIs       []string // e.g. SPIFFE IDs; must be absolute URIs
	DNSNames   []string
	IPs        []net.IP
	// Server and Client select the extended key usages (serverAuth,
	// clientAuth). At least one is required.
	Server, Client bool
	// NotBefore and NotAfter default to now-1m and now+24h.
	NotBefore, NotAfter time.Time
}

// Leaf is an issued certificate with its private key, in the forms callers
// need: PEM for files, tls.Certificate for tls.Config, x509 for inspection.
type Leaf struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
	Cert            *x509.Certificate
}

// Issue creates a leaf certificate with a fresh ECDSA P-256 key, signed by
// the CA. It does not judge whether URIs are valid SPIFFE IDs: tests need
// to mint malformed ones to prove that verifiers reject them.
func (ca *CA) Issue(o LeafOptions) (*Leaf, error) {
	tmpl, err := ca.leafTemplate(o)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate leaf key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign leaf certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse leaf certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert},
		Cert:    cert,
	}, nil
}

func (ca *CA) leafTemplate(o LeafOptions) (*x509.Certificate, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, fmt.Errorf("%w: CA has no certificate or key", ErrInvalidOptions)
	}
	if o.CommonName == "" && len(o.URIs) == 0 && len(o.DNSNames) == 0 && len(o.IPs) == 0 {
		return nil, fmt.Errorf("%w: leaf has no common name, URI, DNS name or IP", ErrInvalidOptions)
	}
	// A certificate without extended key usage is valid for any purpose;
	// demanding an explicit choice keeps a client cert from serving TLS.
	if !o.Server && !o.Client {
		return nil, fmt.Errorf("%w: leaf must be for server or client use (or both)", ErrInvalidOptions)
	}
	var eku []x509.ExtKeyUsage
	if o.Server {
		eku = append(eku, x509.ExtKeyUsageServerAuth)
	}
	if o.Client {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	uris := make([]*url.URL, 0, len(o.URIs))
	for _, s := range o.URIs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: URI %q: %w", ErrInvalidOptions, s, err)
		}
		if !u.IsAbs() {
			return nil, fmt.Errorf("%w: URI %q is not absolute", ErrInvalidOptions, s)
		}
		uris = append(uris, u)
	}
	for _, d := range o.DNSNames {
		if d == "" {
			return nil, fmt.Errorf("%w: empty DNS name", ErrInvalidOptions)
		}
	}
	for _, ip := range o.IPs {
		if ip.To16() == nil {
			return nil, fmt.Errorf("%w: invalid IP %v", ErrInvalidOptions, ip)
		}
	}
	now := ca.clock()()
	notBefore, notAfter := o.NotBefore, o.NotAfter
	if notBefore.IsZero() {
		notBefore = now.Add(-backdate)
	}
	if notAfter.IsZero() {
		notAfter = now.Add(defaultLeafValidity)
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("%w: NotAfter %v is not after NotBefore %v", ErrInvalidOptions, notAfter, notBefore)
	}
	if notAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("%w: leaf NotAfter %v is after the CA's %v", ErrInvalidOptions, notAfter, ca.Cert.NotAfter)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  uris,
		DNSNames:              append([]string(nil), o.DNSNames...),
		IPAddresses:           append([]net.IP(nil), o.IPs...),
	}, nil
}

// Pool returns a new pool holding only this CA, for tls.Config RootCAs or
// ClientCAs. Each call returns a fresh pool the caller may extend.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// KeyPEM returns the CA's private key as PKCS#8 PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	return encodeKey(ca.Key)
}

func (ca *CA) clock() func() time.Time {
	if ca.now == nil {
		return time.Now
	}
	return ca.now
}

func newSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("pki: generate serial: %w", err)
		}
		// RFC 5280 requires a positive serial; zero is vanishingly unlikely
		// but cheap to exclude.
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func encodeKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
