package audit

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Known answers. The expected hashes were computed outside Go, from the
// canonical bytes written out by hand in this file, with (LC_ALL=C, bash):
//
//	c1='<kat1Canonical>'
//	{ printf 'ztp-audit-v1\0'; head -c 32 /dev/zero; printf '%016x' ${#c1} | xxd -r -p; printf '%s' "$c1"; } | sha256sum
//	→ e01a58a1afacba37db8bde6e5d73f245da579e69ca5c7a15eb4ef98404255823   (len 523)
//	c2='<kat2Canonical>'
//	{ printf 'ztp-audit-v1\0'; printf '%s' $h1 | xxd -r -p; printf '%016x' ${#c2} | xxd -r -p; printf '%s' "$c2"; } | sha256sum
//	→ d657b84a97015caabc4a019db9616a8314a5658d56b5f8f16041502b2560722d   (len 216)
//
//	c3='<kat3Canonical>' (h2 = kat2Hash; the response-volume fields bytes_in, bytes_out)
//	{ printf 'ztp-audit-v1\0'; printf '%s' $h2 | xxd -r -p; printf '%016x' ${#c3} | xxd -r -p; printf '%s' "$c3"; } | sha256sum
//	→ 863aca2231f647176bfd3449b54054253cb634d2aa3f76d41783f6e60a30f441   (len 264)
//
// and cross-checked for c1 and c3 with Python:
//
//	hashlib.sha256(b'ztp-audit-v1\x00' + bytes(32) + struct.pack('>Q', len(c)) + c).hexdigest()
const (
	kat1Hash      = "e01a58a1afacba37db8bde6e5d73f245da579e69ca5c7a15eb4ef98404255823"
	kat1Canonical = `{"decision":"allow","justification":"rotate <key> & INC-4711","message_index":0,` +
		`"method":"/etcdserverpb.KV/DeleteRange","peer":"127.0.0.1:53312","policy_version":"sha256:abc",` +
		`"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",` +
		`"principal":{"authn":"mtls","groups":["sre"],"id":"spiffe://example.org/user/alice","kind":"human"},` +
		`"request":{"key":"Zm9v","rangeEnd":"AA=="},"request_decoded":true,"seq":1,"ticket":"INC-4711",` +
		`"time":"2026-11-26T10:00:00.123456789Z","type":"request","upstream":"etcd"}`
	kat2Hash      = "d657b84a97015caabc4a019db9616a8314a5658d56b5f8f16041502b2560722d"
	kat2Canonical = `{"code":"OK","duration_ms":1.7,"messages_in":1,"messages_out":1,` +
		`"prev_hash":"` + kat1Hash + `","ref":1,"seq":2,"time":"2026-11-26T10:00:00.125000000Z","type":"outcome"}`
	kat3Hash      = "863aca2231f647176bfd3449b54054253cb634d2aa3f76d41783f6e60a30f441"
	kat3Canonical = `{"bytes_in":12,"bytes_out":70000,"code":"RESOURCE_EXHAUSTED","duration_ms":2.5,"messages_in":1,"messages_out":3,` +
		`"prev_hash":"` + kat2Hash + `","ref":1,"seq":3,"time":"2026-11-26T10:00:00.125000000Z","type":"outcome"}`
)

func katRecords() []*Record {
	return []*Record{
		{
			Time:           time.Date(2026, 11, 26, 11, 0, 0, 123456789, time.FixedZone("CET", 3600)),
			Type:           TypeRequest,
			Principal:      &Principal{ID: "spiffe://example.org/user/alice", Kind: "human", Groups: []string{"sre"}, Authn: "mtls"},
			Peer:           "127.0.0.1:53312",
			Method:         "/etcdserverpb.KV/DeleteRange",
			Upstream:       "etcd",
			Request:        json.RawMessage(`{ "rangeEnd": "AA==", "key": "Zm9v" }`),
			RequestDecoded: true,
			Justification:  "rotate <key> & INC-4711",
			Ticket:         "INC-4711",
			Decision:       DecisionAllow,
			PolicyVersion:  "sha256:abc",
		},
		{
			Type: TypeOutcome, Ref: 1, Code: "OK", DurationMS: 1.7, MessagesIn: 1, MessagesOut: 1,
		},
		{
			Type: TypeOutcome, Ref: 1, Code: "RESOURCE_EXHAUSTED", DurationMS: 2.5, MessagesIn: 1, MessagesOut: 3,
			BytesIn: 12, BytesOut: 70000,
		},
	}
}

// withHash inserts the hash member where the documentation says it goes.
func withHash(canon, hash string) string {
	i := strings.Index(canon, `"justification"`)
	if i < 0 {
		i = strings.Index(canon, `"message_index"`)
	}
	if i < 0 {
		i = strings.Index(canon, `"messages_in"`)
	}
	return canon[:i] + `"hash":"` + hash + `",` + canon[i:]
}

func TestKnownAnswer(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 125000000, time.UTC) }
	s, _ := openTestStore(t, Options{Now: clock})
	recs := katRecords()
	for i, want := range []struct{ canon, hash string }{{kat1Canonical, kat1Hash}, {kat2Canonical, kat2Hash}, {kat3Canonical, kat3Hash}} {
		r := recs[i]
		mustAppend(t, s, r)
		if r.Hash != want.hash {
			t.Errorf("record %d: hash = %s, want %s", i+1, r.Hash, want.hash)
		}
		line := storeLines(t, s)[i]
		if got, wantLine := string(line), withHash(want.canon, want.hash); got != wantLine {
			t.Errorf("record %d: stored line\n got %s\nwant %s", i+1, got, wantLine)
		}
		canon, _, err := splitLine(line)
		if err != nil || string(canon) != want.canon {
			t.Errorf("splitLine(record %d) = %s, %v; want %s", i+1, canon, err, want.canon)
		}
	}
	if seq, head := s.Head(); seq != 3 || head != kat3Hash {
		t.Errorf("Head() = %d, %s; want 3, %s", seq, head, kat3Hash)
	}
}

// TestHashFirstMember covers the other branch of the recipe: a record with
// no key sorting before "hash" gets the hash as its first member.
func TestHashFirstMember(t *testing.T) {
	s, _ := openTestStore(t, Options{Now: fixedClock()})
	mustAppend(t, s, &Record{Type: TypeSystem})
	line := storeLines(t, s)[0]
	if !strings.HasPrefix(string(line), `{"hash":"`) {
		t.Fatalf("line = %s, want it to start with the hash member", line)
	}
	if _, err := VerifyLine(line); err != nil {
		t.Fatalf("VerifyLine(%s) = %v", line, err)
	}
}

// TestPythonVerifier runs the independent verifier from testdata on an
// export: the documented recipe works without this package's code.
func TestPythonVerifier(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	s, path := openTestStore(t, Options{Now: fixedClock(), MaxRequestBytes: 64 << 10})
	for _, r := range katRecords() {
		mustAppend(t, s, r)
	}
	mustAppend(t, s, &Record{Type: TypeSystem, Detail: "weird \u2028 \x01 \"chars\" 🎉 \xff"})
	mustAppend(t, s, &Record{Type: TypeRequest, Request: json.RawMessage(`{"n":1e2,"hash":"x","f":1.50}`), Metadata: map[string][]string{"x-request-id": {"1"}}})
	mustAppend(t, s, &Record{Type: TypeOutcome, Ref: 5, Code: "PERMISSION_DENIED", DurationMS: 1e-7})
	mustAppend(t, s, &Record{Type: TypeRequest, Request: json.RawMessage(`{"k":"` + strings.Repeat(`é\"`, 40000) + `"}`), RequestDecoded: true,
		RequestBytes: 22, RequestSHA256: "d65b57ff3530e17bf61692d7b4fb3c4680e199fc8edc45de3beb4eae8cbf740b"})
	_, head := s.Head()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(t.TempDir(), "export.jsonl")
	var b strings.Builder
	for _, l := range exportLines(t, path) {
		b.Write(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(export, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	out, err := exec.CommandContext(ctx, py, "testdata/verify_audit.py", export).CombinedOutput()
	if want := "ok 7 " + head + "\n"; err != nil || string(out) != want {
		t.Fatalf("verify_audit.py = %q, %v; want %q", out, err, want)
	}

	// And it notices an edit.
	tampered := strings.Replace(b.String(), "PERMISSION_DENIED", "OK", 1)
	if err := os.WriteFile(export, []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, py, "testdata/verify_audit.py", export).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad 6: hash mismatch") {
		t.Fatalf("verify_audit.py on an edited export = %q, %v; want failure at 6", out, err)
	}
}

// Known answers for the request digest fields (request_bytes,
// request_sha256, request_truncated), computed outside Go as above, with
// the bash recipe and Python agreeing:
//
//	katDigest1: 8d1e50f4f98c0c2c1ceccff50a59f8d9a235f02ca37c7da09ff049e6bfde056c (len 381, prev 64 zeros)
//	katDigest2: 188a69220eb8e760dc905ce584170ba40fd193dc401d945c39e22ba5c7d599ff (len 320, prev katDigest1)
//
// The message of katDigest1 is the 22 bytes 0a 07 "/secret" 12 0b "value-value"
// (sha256sum: d65b57ff…740b); its rendering, 48 bytes, is over the store's
// MaxRequestBytes of 16, so its first 16 bytes are kept as a string. katDigest2 is
// an empty message (the SHA-256 of nothing) whose rendering {} fits.
const (
	katDigest1Hash      = "8d1e50f4f98c0c2c1ceccff50a59f8d9a235f02ca37c7da09ff049e6bfde056c"
	katDigest1Canonical = `{"decision":"deny","message_index":0,"method":"/etcdserverpb.KV/Put",` +
		`"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",` +
		`"request_bytes":22,"request_decoded":true,"request_sha256":"d65b57ff3530e17bf61692d7b4fb3c4680e199fc8edc45de3beb4eae8cbf740b",` +
		`"request_truncated":"{\"key\":\"L3NlY3Jl","seq":1,"time":"2026-11-26T10:00:00.125000000Z","type":"request"}`
	katDigest2Hash      = "188a69220eb8e760dc905ce584170ba40fd193dc401d945c39e22ba5c7d599ff"
	katDigest2Canonical = `{"decision":"allow","message_index":1,"prev_hash":"` + katDigest1Hash + `","request":{},` +
		`"request_bytes":0,"request_decoded":true,"request_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",` +
		`"seq":2,"time":"2026-11-26T10:00:00.125000000Z","type":"request"}`
)

func TestKnownAnswerRequestDigest(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 125000000, time.UTC) }
	s, _ := openTestStore(t, Options{Now: clock, MaxRequestBytes: 16})
	recs := []*Record{
		{
			Type: TypeRequest, Method: "/etcdserverpb.KV/Put", Decision: DecisionDeny,
			Request: json.RawMessage(`{"value": "dmFsdWUtdmFsdWU=", "key": "L3NlY3JldA=="}`), RequestDecoded: true,
			RequestBytes: 22, RequestSHA256: "d65b57ff3530e17bf61692d7b4fb3c4680e199fc8edc45de3beb4eae8cbf740b",
		},
		{
			Type: TypeRequest, MessageIndex: 1, Decision: DecisionAllow,
			Request: json.RawMessage(`{}`), RequestDecoded: true,
			RequestSHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		},
	}
	for i, want := range []struct{ canon, hash string }{{katDigest1Canonical, katDigest1Hash}, {katDigest2Canonical, katDigest2Hash}} {
		mustAppend(t, s, recs[i])
		if recs[i].Hash != want.hash {
			t.Errorf("record %d: hash = %s, want %s", i+1, recs[i].Hash, want.hash)
		}
		line := storeLines(t, s)[i]
		if got, wantLine := string(line), withHash(want.canon, want.hash); got != wantLine {
			t.Errorf("record %d: stored line\n got %s\nwant %s", i+1, got, wantLine)
		}
		got, err := VerifyLine(line)
		if err != nil {
			t.Fatalf("VerifyLine(record %d) = %v", i+1, err)
		}
		if got.RequestSHA256 != recs[i].RequestSHA256 || got.RequestBytes != recs[i].RequestBytes {
			t.Errorf("record %d parsed back: bytes %d sha %s", i+1, got.RequestBytes, got.RequestSHA256)
		}
	}
	if got, err := ParseLine(storeLines(t, s)[0]); err != nil || got.Request != nil || got.RequestTruncated != `{"key":"L3NlY3Jl` {
		t.Errorf("truncated record: request %s, request_truncated %q", got.Request, got.RequestTruncated)
	}
}

// Known answer for request_unknown_fields, computed outside Go as above (bash recipe and
// Python agree):
//
//	katUnknown: e17246555dc37e8e1fe043ea1267ad30be1c336ccce5a8f42b224e0f94844771 (len 316, prev 64 zeros)
const (
	katUnknownHash      = "e17246555dc37e8e1fe043ea1267ad30be1c336ccce5a8f42b224e0f94844771"
	katUnknownCanonical = `{"decision":"deny","message_index":0,"method":"/etcdserverpb.KV/Put",` +
		`"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000",` +
		`"request":{"key":"Zm9v"},"request_decoded":true,"request_unknown_fields":["15","success.requestPut.9"],` +
		`"seq":1,"time":"2026-11-26T10:00:00.125000000Z","type":"request"}`
)

func TestKnownAnswerUnknownFields(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 125000000, time.UTC) }
	s, _ := openTestStore(t, Options{Now: clock})
	r := &Record{
		Type: TypeRequest, Method: "/etcdserverpb.KV/Put", Decision: DecisionDeny,
		Request: json.RawMessage(`{"key":"Zm9v"}`), RequestDecoded: true,
		RequestUnknownFields: []string{"15", "success.requestPut.9"},
	}
	mustAppend(t, s, r)
	if r.Hash != katUnknownHash {
		t.Errorf("hash = %s, want %s", r.Hash, katUnknownHash)
	}
	if got, want := string(storeLines(t, s)[0]), withHash(katUnknownCanonical, katUnknownHash); got != want {
		t.Errorf("stored line\n got %s\nwant %s", got, want)
	}
}
