// Package pki mints development certificates: a self-signed CA and the
// server and client (SPIFFE) leaf certificates it issues.
//
// It exists so that every test in the project can build real mutual TLS
// instead of switching security off, and so that `ztpctl certs` can give
// someone trying ztp a working set of files in one command. It is not a
// production certificate authority: there is no revocation, no HSM, and
// the CA key lives in memory or in a plain PEM file.
//
// What it does guarantee:
//
//   - Every key is a fresh ECDSA P-256 key, stored as PKCS#8 PEM
//     ("PRIVATE KEY").
//   - Every serial number is 128 random bits, so two certificates from the
//     same CA never collide in practice.
//   - A CA can sign certificates (and nothing below it can: path length 0);
//     a leaf is never a CA, carries only the extended key usages asked for,
//     and must name at least one usage, so a leaf cannot silently be valid
//     for "any" purpose.
//   - Issue refuses a leaf that would outlive its CA or that has a malformed
//     validity window.
//   - WriteFiles leaves the private key readable by its owner only (0600),
//     whatever the process umask, and never leaves a half-written file
//     behind.
//
// Time is injectable (WithClock) so that tests can mint certificates that
// are already expired or not yet valid without sleeping.
package pki
