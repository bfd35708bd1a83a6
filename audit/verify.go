package audit

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
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
	// FaultCheckpoint: an intact, linked record at a checkpoint's size has
	// another hash than the checkpoint: the log was rolled back and
	// rewritten (forked) since the checkpoint was signed.
	FaultCheckpoint Fault = "checkpoint_mismatch"
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
	cp   *Checkpoint // when set, the chain must pass through it
	top  []rawMember // scratch for checkLine
}

// NewChainVerifier returns a verifier expecting seq 1 with a zero prev hash.
func NewChainVerifier() *ChainVerifier { return &ChainVerifier{next: 1} }

// Add verifies the next line. After the first failure every call returns
// the same *VerifyError. Without storage keys, a record whose seq is ahead
// of the expected one is reported as FaultMissing and one behind as
// FaultOrder.
func (v *ChainVerifier) Add(line []byte) error { return v.add(0, false, line) }

// ExpectCheckpoint makes the verifier require that the chain extends cp:
// the record at seq cp.Size must have hash cp.Hash (else FaultCheckpoint),
// and Finish fails with FaultMissing if the lines end before it. Call it
// before the first Add; check cp's signature first (OpenCheckpoint).
func (v *ChainVerifier) ExpectCheckpoint(cp Checkpoint) { v.cp = &cp }

// Finish reports the first problem of the whole sequence, including a log
// that ends before the expected checkpoint (truncated or rolled back).
func (v *ChainVerifier) Finish() error {
	if v.err != nil {
		return v.err
	}
	if last := v.next - 1; v.cp != nil && last < v.cp.Size {
		return v.fail(last+1, FaultMissing, fmt.Sprintf("log ends at seq %d, but the checkpoint covers %d records (tail truncated or rolled back)", last, v.cp.Size))
	}
	return nil
}

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
	l, err := checkLine(line, &v.top)
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
	case v.cp != nil && want == v.cp.Size && hexString(l.hash) != v.cp.Hash:
		return v.fail(want, FaultCheckpoint, fmt.Sprintf("hash %s, but the checkpoint signed %s says %s (log rolled back and rewritten)", hexString(l.hash), v.cp.Time.Format(time.RFC3339), v.cp.Hash))
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
	if _, err := checkLine(line, nil); err != nil {
		return nil, err
	}
	return ParseLine(line)
}

// checkLine is the documented verification recipe plus the checks that
// make a line's encoding unique (canonical form, one spelling of each
// number and hash).
func checkLine(line []byte, scratch *[]rawMember) (lineInfo, *VerifyError) {
	var l lineInfo
	bad := func(f Fault, format string, args ...any) (lineInfo, *VerifyError) {
		return l, &VerifyError{Fault: f, Detail: fmt.Sprintf(format, args...)}
	}
	var buf []rawMember
	if scratch != nil {
		buf = *scratch
	}
	top, err := checkCanonical(line, buf)
	if scratch != nil {
		*scratch = top
	}
	if err != nil {
		return bad(FaultMalformed, "not canonical JSON: %v", err)
	}
	if line[0] != '{' {
		return bad(FaultMalformed, "not a JSON object")
	}
	var seq, prev, hash []byte
	for _, m := range top {
		switch string(m.key) {
		case "seq":
			seq = m.val
		case "prev_hash":
			prev = m.val
		case "hash":
			hash = m.val
		}
	}
	isString := func(v []byte) bool { return len(v) >= 2 && v[0] == '"' }
	if seq == nil || isString(seq) || seq[0] == '[' || seq[0] == '{' || !isString(prev) || !isString(hash) {
		return bad(FaultMalformed, "seq, prev_hash or hash missing or mistyped")
	}
	prevText, hashText := prev[1:len(prev)-1], hash[1:len(hash)-1]
	if l.seq, err = strconv.ParseUint(string(seq), 10, 64); err != nil || l.seq == 0 || string(seq) != strconv.FormatUint(l.seq, 10) {
		return bad(FaultMalformed, "seq %s is not a positive integer in canonical form", seq)
	}
	if l.prev, err = parseHex(prevText); err != nil {
		return bad(FaultMalformed, "prev_hash: %v", err)
	}
	a, b, claimed, err := cutHash(line)
	if err != nil {
		return bad(FaultMalformed, "%v", err)
	}
	if hexString(claimed) != string(hashText) {
		return bad(FaultMalformed, "first hash member is not the top-level one")
	}
	l.hash = chainHash(l.prev, a, b)
	if l.hash != claimed {
		return bad(FaultHash, "hash %s, bytes hash to %s", hashText, hexString(l.hash))
	}
	return l, nil
}
