package audit

import "errors"

var (
	// ErrClosed is returned by Append, Ping, Scan, Verify and Check when the
	// Store has been closed (or Close has begun); the record was not queued.
	ErrClosed = errors.New("audit: store closed")

	// ErrWrite is returned by Append and Ping when the bbolt transaction that
	// would have made the record durable failed. The record is not in the log
	// and the chain head did not advance; the caller must treat the
	// guarded action as unaudited and refuse it.
	ErrWrite = errors.New("audit: write failed")

	// ErrInvalidRecord is returned by Append when the record cannot be
	// encoded: an unknown type or decision, a Request that is not a single
	// valid JSON value, a time outside years 0000–9999, a non-finite duration,
	// or a record larger than the size limit.
	ErrInvalidRecord = errors.New("audit: invalid record")

	// ErrInvalidOptions is returned by Open when Options are unusable, for
	// example a malformed Redact pattern or a negative Timeout.
	ErrInvalidOptions = errors.New("audit: invalid options")

	// ErrLocked is returned by Open and OpenReader when another process (or
	// another Store in this process) holds the database file's lock for
	// longer than the configured timeout.
	ErrLocked = errors.New("audit: database locked")

	// ErrNotAuditLog is returned by Open and OpenReader when the file is a
	// bbolt database that was not created by this package (or by an
	// incompatible format version).
	ErrNotAuditLog = errors.New("audit: not an audit log")

	// ErrCorrupt is returned by Scan and ParseLine when stored bytes cannot
	// be decoded as a record, and by Open when the chain head cannot be
	// recovered. Verify reports the same damage as a VerifyError instead.
	ErrCorrupt = errors.New("audit: corrupt record")

	// ErrChainBroken is returned (wrapped in a *VerifyError) by Verify,
	// VerifyFile, VerifyLine and ChainVerifier when a record was edited,
	// removed, reordered or does not link to its predecessor.
	ErrChainBroken = errors.New("audit: chain broken")

	// ErrKey is returned by LoadSigner, ParsePublicKey and OpenCheckpoint
	// when a key file cannot be read or is not an Ed25519 key in the
	// expected PEM form.
	ErrKey = errors.New("audit: unusable key")

	// ErrBadCheckpoint is returned by ParseCheckpoint and OpenCheckpoint
	// when a checkpoint is not in the documented format, or (OpenCheckpoint)
	// carries no valid signature by the given key; by Sign for a hash that
	// is not 64 hex digits.
	ErrBadCheckpoint = errors.New("audit: bad checkpoint")

	// ErrNoCheckpoint is returned by LatestCheckpoint when no checkpoint has
	// been signed yet, and by Checkpoint when the log is empty.
	ErrNoCheckpoint = errors.New("audit: no checkpoint")

	// ErrNoSigner is returned by Checkpoint when the store has no signer
	// (audit.signing_key is not configured).
	ErrNoSigner = errors.New("audit: no checkpoint signing key")

	// ErrInvalidFilter is returned by Export and Follow when a Filter is
	// unusable: a malformed method glob, Until not after Since, or Until
	// combined with Follow.
	ErrInvalidFilter = errors.New("audit: invalid export filter")
)
