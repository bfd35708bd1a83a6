package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"time"
)

// keyPair is the user's client certificate (--cert/--key), read from its files
// whenever a TLS handshake asks for it.
type keyPair struct {
	cert, key string
	now       func() time.Time
}

// load reads the pair and refuses a certificate outside its validity period
// with a message that says so: the proxy would only answer with a failed
// handshake, which clients report as "broken pipe" or "deadline exceeded".
func (k keyPair) load() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		return nil, fmt.Errorf("--cert/--key: %w", err)
	}
	leaf := c.Leaf // parsed by LoadX509KeyPair
	now := k.now()
	switch {
	case leaf == nil:
		return nil, fmt.Errorf("--cert %s: no certificate", k.cert)
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("--cert %s: your certificate expired at %s (%s ago); get a fresh one", k.cert, leaf.NotAfter.UTC().Format(time.RFC3339), now.Sub(leaf.NotAfter).Round(time.Second))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("--cert %s: your certificate is not valid before %s (in %s); check this machine's clock", k.cert, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotBefore.Sub(now).Round(time.Second))
	}
	return &c, nil
}

// tokenFile sends the JWT held in a file as "authorization: Bearer …" (over
// TLS only), reading the file for every call.
type tokenFile struct {
	path string
}

func (t tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.read()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

func (tokenFile) RequireTransportSecurity() bool { return true }

// read returns the token, refusing an empty file. The proxy alone judges the
// token (its clock and leeway decide expiry) and names what is wrong with it.
func (t tokenFile) read() (string, error) {
	raw, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(raw))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s: empty", t.path)
	}
	return tok, nil
}
