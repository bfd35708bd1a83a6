// Package audit is ztp's append-only, tamper-evident, durable audit log.
//
// The proxy calls [Store.Append] for every decision before it forwards the
// message and forwards only if Append returned nil: nothing reaches
// production unaudited. The log is one bbolt file; each record carries a
// sequence number and a SHA-256 hash chained to its predecessor, so editing,
// deleting or reordering records is detected by [VerifyFile] (or by anyone
// holding an export, with the recipe below).
//
// # Guarantees
//
//   - Durable: Append returns nil only after the bbolt transaction holding
//     the record has committed and been fsync'd (NoSync is never used).
//   - Fail closed: if a commit fails, every Append in it gets an error
//     wrapping [ErrWrite], and the chain head does not advance; the next
//     batch chains from the last committed record. Records are never
//     skipped or silently dropped.
//   - Ordered: seq runs 1, 2, 3… without gaps, assigned inside the write
//     transaction in commit order. Store key = 8-byte big-endian seq in
//     bucket "records"; value = the record's exported JSON line. Bucket
//     "meta" holds "format" = "ztp-audit-v1" and "head" = uint64be(seq) ||
//     32-byte hash of the last record, updated in the same transaction,
//     and "checkpoint", the latest signed checkpoint.
//   - Fast: one writer goroutine group-commits. It takes the first queued
//     record, adds whatever is already queued (up to Options.MaxBatch) and
//     commits them with one fsync, so a lone caller never waits for a
//     timer and concurrent callers share fsyncs.
//   - Frozen encoding: a record is encoded once, when it is appended, and
//     its bytes are stored and exported as they are. Reading parses those
//     bytes; nothing is ever re-encoded.
//   - Damage is a verdict, not a crash: before bbolt maps a file, its page
//     structure is walked with bounded reads under the file lock; a file
//     bbolt could not walk safely (truncated, overwritten pages, both meta
//     pages invalid) is refused by Open and OpenReader with [ErrDamaged]
//     naming the damage. bbolt calls are guarded (a fault reading a file
//     that shrank under the process becomes ErrDamaged), and a Store whose
//     write transaction faulted refuses every later Append.
//
// A local hash chain proves only its own consistency: someone who can
// write the file can cut its tail and rewrite the meta head, or edit a
// record and recompute every later hash. A signed checkpoint of
// [Store.Head] kept elsewhere detects both.
//
// # Checkpoints
//
// With a [Signer] ([Store.SignCheckpoints]; the proxy's audit.signing_key)
// the store signs its head: when asked ([Store.Checkpoint], which the
// proxy calls every audit.checkpoint_interval and a LatestCheckpoint call
// triggers), only when the head moved, and once more when it closes. A
// checkpoint is a signed note — text "ztp-audit-checkpoint/v1", "size N",
// "hash H", "time T", then an Ed25519 signature line — see [Checkpoint]
// and [OpenCheckpoint]. It lives in the meta bucket rather than in the
// chain: a checkpoint record would itself move the head it certifies.
// Kept in the file it proves nothing against someone who can rewrite the
// file; shipped off the host, [Reader.VerifyExtends] (or
// [ChainVerifier.ExpectCheckpoint] on an export) proves that a later log
// still holds record N with hash H — truncation and rollback are caught.
// The store refuses to sign a head that does not extend its previous
// checkpoint, so it never vouches for a rolled-back log.
// [Store.OnCheckpoint] hands each new checkpoint to a [Shipper], which
// writes it into a directory and/or runs a command with it on stdin, with
// bounded queues and retries, so checkpoints leave the host without
// blocking the log.
//
// # Export
//
// [Store.Export] and [Reader.Export] stream stored lines, the exact bytes
// that were hashed, filtered by a [Filter], in bounded chunks while
// appends go on; [Store.Follow] keeps streaming as records are committed
// ([Store.Appended] wakes it, nothing polls). [Service] serves both, and
// Verify and LatestCheckpoint, as the ztp.v1.Audit control API.
//
// # Record encoding (format v1)
//
// The canonical bytes of a record are its JSON object without the "hash"
// member, where
//
//   - object keys are sorted by their bytes (UTF-8, i.e. by code point) at
//     every level, with no duplicates;
//   - there is no insignificant whitespace;
//   - strings are escaped as Go's encoding/json escapes them with HTML
//     escaping off: `"` and `\` with a backslash; \b \f \n \r \t as those
//     short escapes; other bytes below 0x20 as \u00xx with lower-case hex;
//     U+2028 and U+2029 as \u2028 and \u2029; every other character as
//     itself in UTF-8 (invalid UTF-8 is replaced by U+FFFD when appended);
//   - numbers inside "request" keep the text they had (json.Number); record
//     fields are integers in decimal, and duration_ms is a float64 as
//     encoding/json renders it;
//   - "time" is UTC with exactly nine fractional digits,
//     2006-01-02T15:04:05.000000000Z;
//   - "prev_hash" is the previous record's hash, and 64 zeros for seq 1.
//
// "queries" (on request records whose policy asked the upstream with
// ztp.query) is an array of objects with the keys answer, answer_sha256,
// error, method and request; see [Query]. It sorts after "hash", so the
// recipe below is unchanged by it.
//
// Fields with zero values are omitted, except that request records always
// carry message_index and request_decoded, outcome records always carry
// duration_ms, messages_in and messages_out, request_bytes is present
// whenever request_sha256 is (0 for an empty message), and principal (when
// present) always has authn, groups (an array), id and kind. seq, time,
// type and prev_hash are always present.
//
// Fields are only ever added, as optional members whose key sorts after
// "hash" or whose value is a string or number, so that step 1 of the recipe
// below keeps working and records written before a field existed verify
// unchanged. bytes_in and bytes_out (an outcome's message bytes; omitted when
// zero), request_bytes and request_sha256 (the size and SHA-256 of the exact
// message bytes forwarded or refused) and request_truncated (see
// Options.MaxRequestBytes: the first bytes of a rendering too long to keep, as
// a string, in place of request) were added this way.
//
// The record's hash is
//
//	hash = hex(SHA-256("ztp-audit-v1" || 0x00 || prev || uint64be(len(c)) || c))
//
// where prev is the 32 raw bytes of prev_hash, c the canonical bytes, and
// hex lower-case. The exported line (and stored value) is c with the
// member "hash":"<64 hex digits>" inserted at its sorted position.
//
// # Verifying an export independently
//
// For each line of an export, in order:
//
//  1. Find the first occurrence of the 8 bytes "hash":" in the line. It
//     starts the top-level hash member (in v1 every top-level key sorting
//     before "hash" has a string or number value, and string contents
//     never contain an unescaped quote). Take the 64 hex digits after it.
//  2. Remove that member, "hash":"<64 hex>", together with the comma before
//     it, or, if it directly follows the opening brace, the comma after it.
//     The result is c.
//  3. Decode prev_hash to 32 bytes and check the hash formula above.
//  4. Check the chain: the first line has seq 1 and prev_hash of 64 zeros;
//     each following line has seq one higher and prev_hash equal to the
//     previous line's hash.
//
// Do not re-serialize parsed JSON to obtain c: general-purpose encoders
// differ in number formatting and escaping. testdata/verify_audit.py is a
// 30-line Python verifier that follows these steps; the tests run it
// against an export when python3 is installed. [ChainVerifier] and
// [VerifyLine] do the same in Go and also insist that the line is in
// canonical form.
//
// # Redaction
//
// Options.Redact paths name values inside Record.Request that are replaced
// by the string "[redacted]" in the stored copy before hashing: "password"
// (a top-level key), "*.secret" (key "secret" under any top-level key),
// "a.b.c". A segment is a literal key or "*"; arrays are transparent, so
// "items.secret" covers every element of "items". Keys containing dots
// cannot be named. Invalid patterns make Open fail, naming the pattern.
// Only Request is redacted: the proxy must not put secrets into Metadata,
// Justification or other fields.
package audit
