package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// hashDomain prefixes every hashed frame. The version in it changes
// whenever the canonical encoding or the frame changes.
const hashDomain = "ztp-audit-v1\x00"

// timeLayout is RFC 3339 in UTC with exactly nine fractional digits, so
// every time has one spelling and times sort as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// maxRecordBytes bounds one record's encoding so that one oversized record
// is refused on its own instead of failing a whole batch inside bbolt.
const maxRecordBytes = 64 << 20

// field enumerates the top-level record keys in canonical (sorted) order.
// Writer-assigned fields (prev_hash, seq, time when unset, hash) are filled
// in when the record is sealed.
type field uint8

const (
	fBreakglassGrant field = iota
	fBytesIn
	fBytesOut
	fCode
	fDecision
	fDetail
	fDurationMS
	fHash
	fJustification
	fMessageIndex
	fMessagesIn
	fMessagesOut
	fMetadata
	fMethod
	fPeer
	fPolicyVersion
	fPrevHash
	fPrincipal
	fQueries
	fReasons
	fRef
	fRequest
	fRequestBytes
	fRequestDecoded
	fRequestSHA256
	fRequestTruncated
	fRequestUnknownFields
	fSeq
	fTicket
	fTime
	fType
	fUpstream
	numFields
)

// fieldKeys must stay sorted; a test checks it.
var fieldKeys = [numFields]string{
	"breakglass_grant", "bytes_in", "bytes_out", "code", "decision", "detail", "duration_ms", "hash",
	"justification", "message_index", "messages_in", "messages_out",
	"metadata", "method", "peer", "policy_version", "prev_hash", "principal",
	"queries", "reasons", "ref", "request", "request_bytes", "request_decoded",
	"request_sha256", "request_truncated", "request_unknown_fields", "seq", "ticket", "time", "type",
	"upstream",
}

// entry is a record encoded field by field into one buffer it owns, so the
// writer goroutine never touches caller memory.
type entry struct {
	buf   []byte
	spans [numFields]struct{ start, end int } // end == 0: field absent
	time  time.Time                           // valid when fTime is set
}

func (e *entry) set(f field, appendVal func([]byte) []byte) {
	start := len(e.buf)
	e.buf = appendVal(e.buf)
	e.spans[f].start, e.spans[f].end = start, len(e.buf)
}

// StoredRequestBound is an upper bound of the bytes a request rendering of
// n bytes takes in a record under Options.MaxRequestBytes max (0: no
// bound). A rendering cut to max is kept as a JSON string of its prefix
// (request_truncated), in which every quote and backslash of the prefix is
// escaped: up to twice max.
func StoredRequestBound(n, max int) int {
	if max > 0 && n > max {
		return 2*max + 2
	}
	return n
}

func (e *entry) setString(f field, s string) {
	if s != "" {
		e.set(f, func(b []byte) []byte { return appendString(b, s) })
	}
}

func (e *entry) setUint(f field, n uint64, always bool) {
	if n != 0 || always {
		e.set(f, func(b []byte) []byte { return strconv.AppendUint(b, n, 10) })
	}
}

func (e *entry) has(f field) bool { return e.spans[f].end != 0 }

func (e *entry) val(f field) []byte { return e.buf[e.spans[f].start:e.spans[f].end] }

// newEntry validates r and encodes every field the caller controls. It runs
// in the caller's goroutine, so canonicalization and redaction cost is
// spread over callers rather than serialized in the writer.
func newEntry(r *Record, redact []redactPath, maxRequest int) (*entry, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	if !validType(r.Type) {
		return nil, fmt.Errorf("%w: unknown type %q", ErrInvalidRecord, r.Type)
	}
	if !validDecision(r.Decision) {
		return nil, fmt.Errorf("%w: unknown decision %q", ErrInvalidRecord, r.Decision)
	}
	if math.IsNaN(r.DurationMS) || math.IsInf(r.DurationMS, 0) {
		return nil, fmt.Errorf("%w: duration_ms is %v", ErrInvalidRecord, r.DurationMS)
	}
	for k := range r.Metadata {
		// Two invalid keys could collapse into one after U+FFFD replacement
		// and leave a duplicate key in the canonical form. gRPC metadata
		// keys are ASCII, so refusing is no loss.
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: metadata key %q is not valid UTF-8", ErrInvalidRecord, k)
		}
	}
	if r.RequestTruncated != "" {
		return nil, fmt.Errorf("%w: request_truncated is set by Append, not by the caller", ErrInvalidRecord)
	}
	if r.RequestSHA256 != "" {
		if _, err := parseHex([]byte(r.RequestSHA256)); err != nil {
			return nil, fmt.Errorf("%w: request_sha256: %w", ErrInvalidRecord, err)
		}
	} else if r.RequestBytes != 0 {
		return nil, fmt.Errorf("%w: request_bytes without request_sha256", ErrInvalidRecord)
	}
	var req []byte
	var truncated string
	if len(r.Request) > 0 {
		var err error
		req, err = canonicalJSON(r.Request, redact)
		if err != nil {
			return nil, fmt.Errorf("%w: request: %w", ErrInvalidRecord, err)
		}
		if string(req) == "null" {
			req = nil
		}
		// Cut after redaction: the prefix never holds what redaction hid.
		if maxRequest > 0 && len(req) > maxRequest {
			truncated, req = utf8Prefix(req, maxRequest), nil
		}
	}

	var queries []byte
	if len(r.Queries) > 0 {
		var err error
		if queries, err = appendQueries(nil, r.Queries, redact); err != nil {
			return nil, err
		}
	}

	e := &entry{buf: make([]byte, 0, 256+len(req)+len(queries))}
	isRequest, isOutcome := r.Type == TypeRequest, r.Type == TypeOutcome
	e.setString(fBreakglassGrant, r.BreakglassGrant)
	e.setUint(fBytesIn, r.BytesIn, false)
	e.setUint(fBytesOut, r.BytesOut, false)
	e.setString(fCode, r.Code)
	e.setString(fDecision, r.Decision)
	e.setString(fDetail, r.Detail)
	if r.DurationMS != 0 || isOutcome {
		d := r.DurationMS
		e.set(fDurationMS, func(b []byte) []byte { return appendFloat(b, d) })
	}
	e.setString(fJustification, r.Justification)
	if r.MessageIndex != 0 || isRequest {
		n := r.MessageIndex
		e.set(fMessageIndex, func(b []byte) []byte { return strconv.AppendInt(b, int64(n), 10) })
	}
	e.setUint(fMessagesIn, r.MessagesIn, isOutcome)
	e.setUint(fMessagesOut, r.MessagesOut, isOutcome)
	if len(r.Metadata) > 0 {
		e.set(fMetadata, func(b []byte) []byte { return appendMetadata(b, r.Metadata) })
	}
	e.setString(fMethod, r.Method)
	e.setString(fPeer, r.Peer)
	e.setString(fPolicyVersion, r.PolicyVersion)
	if p := r.Principal; p != nil {
		e.set(fPrincipal, func(b []byte) []byte { return appendPrincipal(b, p) })
	}
	if queries != nil {
		e.set(fQueries, func(b []byte) []byte { return append(b, queries...) })
	}
	if len(r.Reasons) > 0 {
		e.set(fReasons, func(b []byte) []byte { return appendStrings(b, r.Reasons) })
	}
	e.setUint(fRef, r.Ref, false)
	if req != nil {
		e.set(fRequest, func(b []byte) []byte { return append(b, req...) })
	}
	if r.RequestSHA256 != "" {
		e.setUint(fRequestBytes, r.RequestBytes, true)
	}
	if r.RequestDecoded || isRequest {
		e.set(fRequestDecoded, func(b []byte) []byte { return strconv.AppendBool(b, r.RequestDecoded) })
	}
	e.setString(fRequestSHA256, r.RequestSHA256)
	e.setString(fRequestTruncated, truncated)
	if len(r.RequestUnknownFields) > 0 {
		e.set(fRequestUnknownFields, func(b []byte) []byte { return appendStrings(b, r.RequestUnknownFields) })
	}
	e.setString(fTicket, r.Ticket)
	if !r.Time.IsZero() {
		if err := e.setTime(r.Time); err != nil {
			return nil, err
		}
	}
	e.setString(fType, r.Type)
	e.setString(fUpstream, r.Upstream)
	if len(e.buf) > maxRecordBytes {
		return nil, fmt.Errorf("%w: encoded record is %d bytes, limit %d", ErrInvalidRecord, len(e.buf), maxRecordBytes)
	}
	return e, nil
}

func (e *entry) setTime(t time.Time) error {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%w: time %v outside years 0000-9999", ErrInvalidRecord, t)
	}
	e.time = t
	e.set(fTime, func(b []byte) []byte {
		b = append(b, '"')
		b = t.AppendFormat(b, timeLayout)
		return append(b, '"')
	})
	return nil
}

// seal assigns the writer-owned fields and returns the exported line (the
// value stored in bbolt) and the record's hash. It is called once per
// entry, inside the write transaction, in commit order.
func (e *entry) seal(seq uint64, prev [32]byte, now func() time.Time) (line []byte, hash [32]byte, err error) {
	e.setUint(fSeq, seq, true)
	e.set(fPrevHash, func(b []byte) []byte { return appendHex(b, prev) })
	if !e.has(fTime) {
		if err := e.setTime(now()); err != nil {
			return nil, hash, err
		}
	}
	canon, at, first := e.canonical()
	hash = chainHash(prev, canon)
	return insertHash(canon, at, first, hash), hash, nil
}

// canonical assembles the fields in key order (without hash) and reports
// the offset where the hash member belongs and whether it would be the
// first member.
func (e *entry) canonical() (canon []byte, hashAt int, hashFirst bool) {
	n := 2
	for f := range numFields {
		if e.has(f) {
			n += len(fieldKeys[f]) + 4 + e.spans[f].end - e.spans[f].start
		}
	}
	canon = make([]byte, 0, n+75)
	canon = append(canon, '{')
	for f := range numFields {
		if f == fHash {
			hashAt, hashFirst = len(canon), len(canon) == 1
		}
		if !e.has(f) {
			continue
		}
		if len(canon) > 1 {
			canon = append(canon, ',')
		}
		canon = append(canon, '"')
		canon = append(canon, fieldKeys[f]...)
		canon = append(canon, '"', ':')
		canon = append(canon, e.val(f)...)
	}
	return append(canon, '}'), hashAt, hashFirst
}

// insertHash turns canonical bytes into the exported line: the same bytes
// with "hash" inserted at its sorted position. It reuses canon's spare
// capacity when it can.
func insertHash(canon []byte, at int, first bool, hash [32]byte) []byte {
	member := make([]byte, 0, 76)
	if !first {
		member = append(member, ',')
	}
	member = append(member, `"hash":`...)
	member = appendHex(member, hash)
	if first {
		member = append(member, ',')
	}
	return slices.Insert(canon, at, member...)
}

// hashMarker starts the hash member. In a canonical v1 line its first
// occurrence is the top-level member: every key sorting before "hash" has a
// string or number value, and a string's content cannot contain an
// unescaped quote.
var hashMarker = []byte(`"hash":"`)

// splitLine is the inverse of insertHash: it returns the canonical bytes
// that were hashed and the hash the line claims.
func splitLine(line []byte) (canon []byte, hash [32]byte, err error) {
	a, b, hash, err := cutHash(line)
	if err != nil {
		return nil, hash, err
	}
	return append(append(make([]byte, 0, len(a)+len(b)), a...), b...), hash, nil
}

// cutHash finds the top-level hash member and returns the canonical bytes
// as the two pieces around it (without copying) and the claimed hash.
func cutHash(line []byte) (a, b []byte, hash [32]byte, err error) {
	i := bytes.Index(line, hashMarker)
	end := i + len(hashMarker) + 64 + 1 // 64 hex digits and the closing quote
	if i < 1 || end > len(line) || line[end-1] != '"' {
		return nil, nil, hash, errors.New("no top-level hash member")
	}
	if hash, err = parseHex(line[i+len(hashMarker) : end-1]); err != nil {
		return nil, nil, hash, fmt.Errorf("hash: %w", err)
	}
	switch {
	case line[i-1] == ',':
		return line[:i-1], line[end:], hash, nil
	case line[i-1] == '{' && end < len(line) && line[end] == ',':
		return line[:i], line[end+1:], hash, nil
	}
	return nil, nil, hash, errors.New("hash member is not delimited by commas")
}

// chainHash is SHA-256 over the framed, domain-separated record:
// "ztp-audit-v1\x00" || prev (32 bytes) || uint64be(len(canon)) || canon,
// where canon is the concatenation of parts.
func chainHash(prev [32]byte, parts ...[]byte) [32]byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	h := sha256.New()
	h.Write([]byte(hashDomain))
	h.Write(prev[:])
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(n))
	h.Write(size[:])
	for _, p := range parts {
		h.Write(p)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// appendHex appends h as a JSON string of 64 lower-case hex digits.
func appendHex(b []byte, h [32]byte) []byte {
	b = append(b, '"')
	b = hex.AppendEncode(b, h[:])
	return append(b, '"')
}

// parseHex accepts exactly 64 lower-case hex digits: the only spelling the
// writer produces, so anything else is an edit.
func parseHex(s []byte) (h [32]byte, err error) {
	if len(s) != 64 {
		return h, fmt.Errorf("want 64 hex digits, got %d bytes", len(s))
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, errors.New("not lower-case hex")
		}
	}
	_, err = hex.Decode(h[:], s)
	return h, err
}

// utf8Prefix returns the longest prefix of b of at most n bytes that does
// not end inside a UTF-8 sequence.
func utf8Prefix(b []byte, n int) string {
	b = b[:n]
	// A sequence is at most 4 bytes: look back at most 3 for its start.
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				b = b[:i]
			}
			break
		}
	}
	return string(b)
}

// appendFloat renders f exactly as encoding/json renders a float64.
func appendFloat(b []byte, f float64) []byte {
	j, err := json.Marshal(f)
	if err != nil { // unreachable: NaN and Inf are rejected by newEntry
		panic(err)
	}
	return append(b, j...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendPrincipal(b []byte, p *Principal) []byte {
	b = append(b, `{"authn":`...)
	b = appendString(b, p.Authn)
	b = append(b, `,"groups":`...)
	b = appendStrings(b, p.Groups)
	b = append(b, `,"id":`...)
	b = appendString(b, p.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, p.Kind)
	return append(b, '}')
}

// appendMetadata writes md with keys sorted; newEntry has checked that the
// keys are valid UTF-8, so sorting strings sorts the encoded keys.
func appendMetadata(b []byte, md map[string][]string) []byte {
	keys := slices.Sorted(maps.Keys(md))
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendStrings(b, md[k])
	}
	return append(b, '}')
}
