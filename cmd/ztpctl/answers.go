package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/ztp-dev/ztp/audit"
)

// effectAnswers are the answers policy eval gives the policy's effect queries: those of
// --answers, else those an audit record given as the input holds (its "queries").
func (o *policyEvalOptions) effectAnswers(doc map[string]any) ([]audit.Query, error) {
	if o.answers != "" {
		return readAnswers(o.answers)
	}
	_, seq := doc["seq"]
	raw, ok := doc["queries"]
	if !seq || !ok {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("--input: queries: %w", err)
	}
	var qs []audit.Query
	if err := json.Unmarshal(b, &qs); err != nil {
		return nil, fmt.Errorf("--input: queries: %w", err)
	}
	return qs, nil
}

// readAnswers reads --answers: what the upstream would answer to each effect query.
func readAnswers(file string) ([]audit.Query, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--answers: %w", err)
	}
	var in []struct {
		Method  string          `json:"method"`
		Request json.RawMessage `json:"request"`
		Answer  json.RawMessage `json:"answer"`
	}
	// Other keys are ignored, so an audit record's queries (with answer_sha256) can be
	// given as they are; a misspelt key leaves a required one missing.
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("--answers %s: want a JSON array of {\"method\", \"request\", \"answer\"}: %w", file, err)
	}
	out := make([]audit.Query, 0, len(in))
	for i, a := range in {
		if a.Method == "" || len(a.Request) == 0 || len(a.Answer) == 0 {
			return nil, fmt.Errorf("--answers %s: [%d]: method, request and answer are required", file, i)
		}
		q, err := audit.NewQuery(a.Method, a.Request, a.Answer, "", math.MaxInt)
		if err != nil {
			return nil, fmt.Errorf("--answers %s: [%d]: %w", file, i, err)
		}
		out = append(out, q)
	}
	return out, nil
}
