package pki

import "errors"

var (
	// ErrInvalidOptions is returned when NewCA or Issue is given options that
	// cannot produce a usable certificate: no name at all, no key usage, an
	// unparsable URI, an empty or inverted validity window, or a leaf that
	// would outlive its CA.
	ErrInvalidOptions = errors.New("pki: invalid certificate options")

	// ErrInvalidPEM is returned when LoadCA finds no usable PEM block of the
	// expected type, or a block that does not parse.
	ErrInvalidPEM = errors.New("pki: invalid PEM")

	// ErrNotCA is returned when LoadCA is given a certificate that may not
	// sign other certificates (not a CA, or no certSign key usage).
	ErrNotCA = errors.New("pki: certificate is not a CA")

	// ErrKeyMismatch is returned when LoadCA is given a private key that does
	// not belong to the CA certificate.
	ErrKeyMismatch = errors.New("pki: private key does not match certificate")

	// ErrInvalidName is returned when WriteFiles is given a file name that is
	// empty or would escape the target directory.
	ErrInvalidName = errors.New("pki: invalid file name")
)
