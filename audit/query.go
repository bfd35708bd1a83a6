package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Query is one read-only effect query a policy made while deciding a request record
// (the ztp.query built-in): what was asked, and what the upstream answered. The answer
// is identified by AnswerSHA256 and kept whole only when it is small (see NewQuery), so
// that a policy replay can answer the same query again.
//
// Encoded, in key order: "answer" (an object, when kept), "answer_sha256" (hex SHA-256 of
// the answer's canonical bytes, when there was an answer), "error" (why the query failed,
// when it did), "method" (always), "request" (an object, always). Request and Answer are
// canonicalized and redacted as Record.Request is.
type Query struct {
	Method       string          `json:"method"`
	Request      json.RawMessage `json:"request"`
	Answer       json.RawMessage `json:"answer,omitempty"`
	AnswerSHA256 string          `json:"answer_sha256,omitempty"`
	Error        string          `json:"error,omitempty"`
}

// Canonical returns the canonical form of one JSON value (see "Record encoding"): keys
// sorted, no insignificant whitespace, strings escaped one way. Two JSON texts of the
// same value have the same canonical form.
func Canonical(b []byte) ([]byte, error) { return canonicalJSON(b, nil) }

// NewQuery records a query: the answer's digest, and the answer itself when its canonical
// form has at most keep bytes. answer nil means the query failed with errText.
func NewQuery(method string, request, answer []byte, errText string, keep int) (Query, error) {
	q := Query{Method: method, Request: request, Error: errText}
	if answer != nil {
		canon, err := Canonical(answer)
		if err != nil {
			return Query{}, fmt.Errorf("%w: query %s: answer: %w", ErrInvalidRecord, method, err)
		}
		sum := sha256.Sum256(canon)
		q.AnswerSHA256 = hex.EncodeToString(sum[:])
		if len(canon) <= keep {
			q.Answer = canon
		}
	}
	return q, nil
}

// RecordedAnswer returns the kept answer when it is there and still hashes to
// AnswerSHA256: an answer that redaction changed, or that was not kept, cannot stand in
// for what the upstream said.
func (q *Query) RecordedAnswer() ([]byte, bool) {
	if len(q.Answer) == 0 || q.AnswerSHA256 == "" {
		return nil, false
	}
	canon, err := Canonical(q.Answer)
	if err != nil {
		return nil, false
	}
	sum := sha256.Sum256(canon)
	if hex.EncodeToString(sum[:]) != q.AnswerSHA256 {
		return nil, false
	}
	return canon, true
}

// appendQueries encodes qs canonically, redacting requests and answers. Every error names
// the query by index.
func appendQueries(b []byte, qs []Query, redact []redactPath) ([]byte, error) {
	b = append(b, '[')
	for i := range qs {
		q := &qs[i]
		if i > 0 {
			b = append(b, ',')
		}
		if q.Method == "" {
			return nil, fmt.Errorf("%w: queries[%d]: no method", ErrInvalidRecord, i)
		}
		if len(q.AnswerSHA256) != 0 {
			if _, err := parseHex([]byte(q.AnswerSHA256)); err != nil {
				return nil, fmt.Errorf("%w: queries[%d].answer_sha256: %w", ErrInvalidRecord, i, err)
			}
		}
		req, err := canonicalObject(q.Request, redact)
		if err != nil {
			return nil, fmt.Errorf("%w: queries[%d].request: %w", ErrInvalidRecord, i, err)
		}
		b = append(b, '{')
		if len(q.Answer) > 0 {
			ans, err := canonicalObject(q.Answer, redact)
			if err != nil {
				return nil, fmt.Errorf("%w: queries[%d].answer: %w", ErrInvalidRecord, i, err)
			}
			b = append(b, `"answer":`...)
			b = append(b, ans...)
			b = append(b, ',')
		}
		if q.AnswerSHA256 != "" {
			b = append(b, `"answer_sha256":`...)
			b = appendString(b, q.AnswerSHA256)
			b = append(b, ',')
		}
		if q.Error != "" {
			b = append(b, `"error":`...)
			b = appendString(b, q.Error)
			b = append(b, ',')
		}
		b = append(b, `"method":`...)
		b = appendString(b, q.Method)
		b = append(b, `,"request":`...)
		b = append(b, req...)
		b = append(b, '}')
	}
	return append(b, ']'), nil
}

// canonicalObject is canonicalJSON for a value that must be a JSON object.
func canonicalObject(b []byte, redact []redactPath) ([]byte, error) {
	c, err := canonicalJSON(b, redact)
	if err != nil {
		return nil, err
	}
	if len(c) == 0 || c[0] != '{' {
		return nil, fmt.Errorf("want a JSON object, got %.20s", c)
	}
	return c, nil
}
