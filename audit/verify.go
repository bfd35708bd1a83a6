package audit

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// Fault names what is wrong with the first bad record.
type Fault string

// Faults, from the first check a record fails.
const (
	// FaultMissing: records are absent — a gap in seq, or the log ends
	// before the head recorded in its meta bucket (tail truncated).
	FaultMissing Fault = "missing"
	// FaultMalformed: the stored bytes are not a canonical v1 record line
	// (or its key is not 8 bytes): edited.
	FaultMalformed Fault = "malformed"
	// FaultHash: the record's hash does not match its bytes: edited.
	FaultHash Fault = "hash_mismatch"
	// FaultOrder: an intact record sits at the wrong seq: reordered.
	FaultOrder Fault = "out_of_order"
	// FaultLink: an intact record's prev_hash is not its predecessor's
	// hash: a record was replaced (e.g. rewritten with a recomputed hash).
	FaultLink Fault = "chain_mismatch"
	// FaultHead: the head in the meta bucket disagrees with the last record.
	FaultHead Fault = "head_mismatch"
)

// VerifyError describes the first record that failed verification. It
// wraps ErrChainBroken.
type VerifyError struct {
	Seq    uint64 `json:"seq"`
	Fault  Fault  `json:"fault"`
	Detail string `json:"detail"`
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: chain broken at seq %d: %s: %s", e.Seq, e.Fault, e.Detail)
}

func (e *VerifyError) Unwrap() error { return ErrChainBroken }

// VerifyResult reports a verification: how many records from seq 1 on
// verified, the last good one, and the first problem if any.
type VerifyResult struct {
	Records  uint64       `json:"records"`
	HeadSeq  uint64       `json:"head_seq"`
	HeadHash string       `json:"head_hash"`
	Problem  *VerifyError `json:"problem,omitempty"`
}

// OK reports whether everything checked verified.
func (r VerifyResult) OK() bool { return r.Problem == nil }

// ChainVerifier checks a sequence of exported lines (one record each, in
// seq order, starting at seq 1) without bbolt: what an auditor runs on an
// export. The zero value is not usable; call NewChainVerifier.
type ChainVerifier struct {
	next uint64
	prev [32]byte
	err  *VerifyError
}

// NewChainVerifier returns a verifier expecting seq 1 with a zero prev hash.
func NewChainVerifier() *ChainVerifier { return &ChainVerifier{next: 1} }

// Add verifies the next line. After the first failure every call returns
// the same *VerifyError. Without storage keys, a record whose seq is ahead
// of the expected one is reported as FaultMissing and one behind as
// FaultOrder.
func (v *ChainVerifier) Add(line []byte) error { return v.add(0, false, line) }

// Result reports what has been verified so far.
func (v *ChainVerifier) Result() VerifyResult {
	return VerifyResult{Records: v.next - 1, HeadSeq: v.next - 1, HeadHash: hexString(v.prev), Problem: v.err}
}

func (v *ChainVerifier) fail(seq uint64, f Fault, detail string) error {
	if v.err == nil {
		v.err = &VerifyError{Seq: seq, Fault: f, Detail: detail}
	}
	return v.err
}

// add checks line; key is the storage key it came from when keyed.
func (v *ChainVerifier) add(key uint64, keyed bool, line []byte) error {
	if v.err != nil {
		return v.err
	}
	want := v.next
	if keyed {
		switch {
		case key > want:
			return v.fail(want, FaultMissing, fmt.Sprintf("next stored record is seq %d", key))
		case key < want:
			return v.fail(want, FaultOrder, fmt.Sprintf("unexpected key %d where seq %d belongs", key, want))
		}
	}
	l, err := checkLine(line)
	if err != nil {
		return v.fail(want, err.Fault, err.Detail)
	}
	switch {
	case keyed && l.seq != key:
		return v.fail(want, FaultOrder, fmt.Sprintf("key %d holds the record of seq %d", key, l.seq))
	case l.seq > want:
		return v.fail(want, FaultMissing, fmt.Sprintf("next record is seq %d", l.seq))
	case l.seq < want:
		return v.fail(want, FaultOrder, fmt.Sprintf("record of seq %d after seq %d", l.seq, want-1))
	case l.prev != v.prev:
		return v.fail(want, FaultLink, fmt.Sprintf("prev_hash %s, but seq %d has hash %s", hexString(l.prev), want-1, hexString(v.prev)))
	}
	v.next, v.prev = want+1, l.hash
	return nil
}

// checkHead compares the meta head with the verified chain's end.
func (v *ChainVerifier) checkHead(head []byte) error {
	if v.err != nil {
		return v.err
	}
	last := v.next - 1
	if head == nil {
		if last == 0 {
			return nil
		}
		return v.fail(last, FaultHead, "meta bucket has no head")
	}
	if len(head) != 40 {
		return v.fail(last, FaultHead, fmt.Sprintf("meta head is %d bytes, want 40", len(head)))
	}
	seq := binary.BigEndian.Uint64(head)
	switch {
	case seq > last:
		return v.fail(last+1, FaultMissing, fmt.Sprintf("log ends at seq %d but its head is seq %d (tail truncated)", last, seq))
	case seq < last:
		return v.fail(seq+1, FaultHead, fmt.Sprintf("records after the head seq %d", seq))
	case [32]byte(head[8:]) != v.prev:
		return v.fail(last, FaultHead, fmt.Sprintf("head hash %x, last record's hash %s", head[8:], hexString(v.prev)))
	}
	return nil
}

type lineInfo struct {
	seq        uint64
	prev, hash [32]byte
}

// VerifyLine checks one exported line on its own: it is a canonical v1
// record line and its hash matches its bytes and its prev_hash. It cannot
// tell whether the line belongs in a chain; ChainVerifier does that.
func VerifyLine(line []byte) (*Record, error) {
	if _, err := checkLine(line); err != nil {
		return nil, err
	}
	return ParseLine(line)
}

// checkLine is the documented verification recipe plus the checks that
// make a line's encoding unique (canonical form, one spelling of each
// number and hash).
func checkLine(line []byte) (lineInfo, *VerifyError) {
	var l lineInfo
	bad := func(f Fault, format string, args ...any) (lineInfo, *VerifyError) {
		return l, &VerifyError{Fault: f, Detail: fmt.Sprintf(format, args...)}
	}
	v, err := parseJSON(line)
	if err != nil {
		return bad(FaultMalformed, "not JSON: %v", err)
	}
	if v.kind != jObject {
		return bad(FaultMalformed, "not a JSON object")
	}
	if string(appendCanonical(make([]byte, 0, len(line)), &v)) != string(line) {
		return bad(FaultMalformed, "not in canonical form")
	}
	var seq, prev, hash *jvalue
	for i := range v.obj {
		switch v.obj[i].key {
		case "seq":
			seq = &v.obj[i].val
		case "prev_hash":
			prev = &v.obj[i].val
		case "hash":
			hash = &v.obj[i].val
		}
	}
	if seq == nil || seq.kind != jNumber || prev == nil || prev.kind != jString || hash == nil || hash.kind != jString {
		return bad(FaultMalformed, "seq, prev_hash or hash missing or mistyped")
	}
	if l.seq, err = strconv.ParseUint(seq.text, 10, 64); err != nil || l.seq == 0 || seq.text != strconv.FormatUint(l.seq, 10) {
		return bad(FaultMalformed, "seq %s is not a positive integer in canonical form", seq.text)
	}
	if l.prev, err = parseHex([]byte(prev.text)); err != nil {
		return bad(FaultMalformed, "prev_hash: %v", err)
	}
	canon, claimed, err := splitLine(line)
	if err != nil {
		return bad(FaultMalformed, "%v", err)
	}
	if hexString(claimed) != hash.text {
		return bad(FaultMalformed, "first hash member is not the top-level one")
	}
	l.hash = chainHash(l.prev, canon)
	if l.hash != claimed {
		return bad(FaultHash, "hash %s, bytes hash to %s", hash.text, hexString(l.hash))
	}
	return l, nil
}
