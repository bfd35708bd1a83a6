// Package config loads and validates ztp.yaml, the proxy's configuration file.
//
// The file is the contract operators and their tooling write against (README,
// "Configuration reference"), so this package is strict: unknown keys are errors, every
// problem is reported with the file, line and key path that caused it
// ("ztp.yaml:14: upstreams[0].address: missing port in address"), and all
// problems are reported at once rather than one per attempt. Relative paths are
// resolved against the directory of the file itself, so a config can be moved
// together with its certificates and policies.
//
// Validation here is static (syntax, ranges, files present and parseable); the
// proxy package turns a valid Config into running parts. Both `ztp-proxy
// validate` and `serve` start with [Load], so what it checks of a file (a key
// pair that loads, a CA file holding a CA certificate, an audit signing key
// that audit.LoadSigner accepts) fails both with the same message.
// [LoadOffline] skips every check that opens a file.
package config
