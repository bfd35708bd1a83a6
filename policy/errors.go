package policy

import "errors"

var (
	// ErrNoPolicy is returned by Load when the paths contain no .rego module to load
	// (test files, *_test.rego, do not count unless Options.Tests is set).
	ErrNoPolicy = errors.New("policy: no .rego files found")

	// ErrNoPackage is returned by Load when no loaded module declares package ztp, the
	// package the proxy queries.
	ErrNoPackage = errors.New("policy: no module declares package ztp")

	// ErrCompile is returned by Load when a module does not parse or compile; the message
	// lists every error as file:line:col: code: message.
	ErrCompile = errors.New("policy: compile failed")

	// ErrData is returned by Load when a data file (.json, .yaml, .yml) is malformed or
	// conflicts with another data file; the message names the file.
	ErrData = errors.New("policy: bad data file")

	// ErrUnsupportedFile is returned by Load when a path names a file that is neither a Rego
	// module nor a data file.
	ErrUnsupportedFile = errors.New("policy: unsupported file type")

	// ErrEval is returned by Engine.Eval when evaluation fails: a built-in error, a conflict
	// between rule values, a cancelled context, or an input that cannot be converted.
	ErrEval = errors.New("policy: evaluation failed")

	// ErrType is returned by Engine.Eval when a decision rule has the wrong shape, e.g.
	// allow is not a boolean or deny is not a set of strings.
	ErrType = errors.New("policy: decision has wrong type")

	// ErrUndefined is returned by Engine.Eval when the prepared query produced no result at
	// all. The query is built so that this cannot happen for a well-formed policy; it is
	// reported (and denied) rather than assumed away.
	ErrUndefined = errors.New("policy: decision undefined")

	// ErrTestsFailed is returned by LoadTested when a test_ rule of the policy fails or
	// errors; the message names each such test by file:line:col.
	ErrTestsFailed = errors.New("policy: tests failed")

	// ErrMode is returned by ParseMode for anything other than "enforce" or "dryrun".
	ErrMode = errors.New("policy: unknown mode")
)
