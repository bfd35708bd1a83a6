package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzRecordEncoding builds records from fuzzed fields and checks that the
// writer's field-by-field encoding is exactly the generic canonical form,
// verifies, and decodes back to the same record.
func FuzzRecordEncoding(f *testing.F) {
	f.Add("request", "/a.B/C", "spiffe://x", `{"b":1,"a":"x"}`, "just <&>", "k", "v", int64(0), 1.7, uint64(3), uint16(0))
	f.Add("outcome", "\u2028\xff", "", ``, "", "", "", int64(-1), 0.0, uint64(0), uint16(1))
	f.Add("system", "", "é", `[1.0e3,null]`, "\x00", "hash", `"hash":"`, int64(1e15), 1e-7, uint64(math.MaxUint64), uint16(4))
	f.Add("request", "", "", `{"k":"éé€\u2028"}`, "", "", "", int64(0), 0.0, uint64(5), uint16(9))
	f.Fuzz(func(t *testing.T, typ, method, principal, request, justification, mdKey, mdVal string, tnano int64, dur float64, ref uint64, maxRequest uint16) {
		r := &Record{
			Type:           typ,
			Method:         method,
			Request:        json.RawMessage(request),
			RequestDecoded: len(request) > 0,
			Justification:  justification,
			Metadata:       map[string][]string{mdKey: {mdVal, mdKey}},
			DurationMS:     dur,
			Ref:            ref,
			Reasons:        []string{mdVal},
		}
		if ref%2 == 1 { // the size and hash of the message bytes, here the method's
			sum := sha256.Sum256([]byte(method))
			r.RequestBytes, r.RequestSHA256 = uint64(len(method)), hex.EncodeToString(sum[:])
		}
		if principal != "" {
			r.Principal = &Principal{ID: principal, Kind: "human", Groups: []string{mdVal}, Authn: "jwt"}
		}
		if tnano != 0 {
			r.Time = time.Unix(0, tnano)
		}
		e, err := newEntry(r, nil, int(maxRequest))
		if err != nil {
			return // invalid records are refused, which TestInvalidRecords covers
		}
		prev := chainHash([32]byte{}, []byte(method))
		line, hash, err := e.seal(7, prev, func() time.Time { return time.Unix(1, 2) })
		if err != nil {
			t.Fatalf("seal: %v", err)
		}
		l, verr := checkLine(line, nil)
		if verr != nil {
			t.Fatalf("checkLine(%s) = %v", line, verr)
		}
		if l.seq != 7 || l.prev != prev || l.hash != hash {
			t.Fatalf("checkLine(%s) = %+v; want seq 7, prev %x, hash %x", line, l, prev, hash)
		}
		got, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%s) = %v", line, err)
		}
		want := normalized(r)
		want.Seq, want.Time, want.PrevHash, want.Hash = 7, e.time, hexString(prev), hexString(hash)
		if want.Request != nil {
			c, _ := canonicalJSON(want.Request, nil)
			want.Request = c
			if string(c) == "null" {
				want.Request = nil
			}
			if maxRequest > 0 && len(want.Request) > int(maxRequest) {
				p := want.Request[:maxRequest]
				for len(p) > 0 && !utf8.Valid(p) {
					p = p[:len(p)-1]
				}
				if !strings.HasPrefix(string(c), string(p)) || len(c)-len(p) < 1 {
					t.Fatalf("prefix %q of %q", p, c)
				}
				want.Request, want.RequestTruncated = nil, string(p)
			}
		}
		want.Method = perByteValid(want.Method)
		want.Justification = perByteValid(want.Justification)
		want.Reasons = []string{perByteValid(mdVal)}
		want.Metadata = map[string][]string{mdKey: {perByteValid(mdVal), mdKey}}
		if want.Principal != nil {
			want.Principal.ID = perByteValid(principal)
			want.Principal.Groups = []string{perByteValid(mdVal)}
		}
		if g := normalized(got); !reflect.DeepEqual(g, want) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", line, g, want)
		}
	})
}

// FuzzVerifyLine feeds arbitrary bytes to the line verifier and decoder:
// they must not panic, and whatever verifies must be the exact re-assembly
// of its canonical bytes and hash.
func FuzzVerifyLine(f *testing.F) {
	s, _ := openTestStore(f, Options{Now: fixedClock()})
	for _, r := range append(katRecords(), &Record{Type: TypeSystem}) {
		mustAppend(f, s, r)
	}
	for _, l := range storeLines(f, s) {
		f.Add(l)
	}
	f.Add([]byte(`{"hash":"`))
	f.Add([]byte(`{"a":1,"hash":"0000000000000000000000000000000000000000000000000000000000000000"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		_, _ = ParseLine(line)
		l, verr := checkLine(line, nil)
		if verr != nil {
			if verr.Fault != FaultMalformed && verr.Fault != FaultHash {
				t.Fatalf("checkLine(%q) fault %s; a single line can only be malformed or mis-hashed", line, verr.Fault)
			}
			return
		}
		canon, hash, err := splitLine(line)
		if err != nil || hash != l.hash {
			t.Fatalf("splitLine of a verified line = %v, %x", err, hash)
		}
		if c, err := canonicalJSON(canon, nil); err != nil || !bytes.Equal(c, canon) {
			t.Fatalf("canonical bytes %q of a verified line are not canonical: %q, %v", canon, c, err)
		}
		if chainHash(l.prev, canon) != l.hash {
			t.Fatalf("verified line %q does not hash to its hash", line)
		}
	})
}
