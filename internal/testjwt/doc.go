// Package testjwt mints the signing keys, JWKS files and tokens that the JWT
// tests of identity (the verifier) and cmd/ztpctl (the proxy end to end) check
// the proxy against. It is for tests only: keys are generated per test and
// thrown away.
//
// Sign goes through a JOSE library, so it can only make tokens a library
// agrees to make; HandMade builds the ones an attacker would (alg "none",
// HS256 keyed with a public key, any header), which is what the refusal tests
// need.
package testjwt
