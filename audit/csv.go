package audit

import (
	"encoding/json"
	"strconv"
	"strings"
)

// CSVHeader returns the fixed column set of CSV exports, in order. Columns
// are only ever added at the end, so scripts may address them by position.
//
//	seq, time, type                        every record
//	principal, kind, groups, authn, peer   who (groups joined by ";")
//	method, upstream                       what was called
//	message_index, request_decoded, request  request records; request is its JSON
//	justification, ticket                  why (x-ztp-justification, x-ztp-ticket)
//	decision, reasons, grant, policy_version  the decision (reasons joined by "; ")
//	ref, code, duration_ms, messages_in, messages_out  outcome records
//	detail                                 system, policy and breakglass records; outcome status
//	                                       message; why a request was not decoded
//	metadata                               client metadata as a JSON object
//	prev_hash, hash                        the chain
//	request_bytes, request_sha256, request_truncated  the message's size and
//	                                       SHA-256, and the rendering's
//	                                       prefix when it was too long
//	bytes_in, bytes_out                    outcome records: message bytes received and sent
//	request_unknown_fields                 request records: where the message had fields
//	                                       the descriptors do not know (joined by "; ")
//
// CSV is for reading, not for verifying: verification needs the JSON
// lines, whose bytes are what was hashed. Values are written as recorded;
// a spreadsheet should import them as text (a justification may start
// with "=").
func CSVHeader() []string {
	return []string{
		"seq", "time", "type",
		"principal", "kind", "groups", "authn", "peer",
		"method", "upstream",
		"message_index", "request_decoded", "request",
		"justification", "ticket",
		"decision", "reasons", "grant", "policy_version",
		"ref", "code", "duration_ms", "messages_in", "messages_out",
		"detail", "metadata",
		"prev_hash", "hash",
		"request_bytes", "request_sha256", "request_truncated",
		"bytes_in", "bytes_out", "request_unknown_fields",
	}
}

// CSVRow renders r in CSVHeader's column order.
func CSVRow(r *Record) []string {
	var p Principal
	if r.Principal != nil {
		p = *r.Principal
	}
	var idx, decoded, req string
	if r.Type == TypeRequest {
		idx, decoded = strconv.Itoa(r.MessageIndex), strconv.FormatBool(r.RequestDecoded)
	}
	if len(r.Request) > 0 {
		req = string(r.Request)
	}
	var ref, dur, in, out, bytesIn, bytesOut string
	if r.Type == TypeOutcome {
		dur = strconv.FormatFloat(r.DurationMS, 'f', -1, 64)
		in, out = strconv.FormatUint(r.MessagesIn, 10), strconv.FormatUint(r.MessagesOut, 10)
		bytesIn, bytesOut = strconv.FormatUint(r.BytesIn, 10), strconv.FormatUint(r.BytesOut, 10)
	}
	if r.Ref != 0 {
		ref = strconv.FormatUint(r.Ref, 10)
	}
	var size string
	if r.RequestSHA256 != "" {
		size = strconv.FormatUint(r.RequestBytes, 10)
	}
	var md string
	if len(r.Metadata) > 0 {
		b, _ := json.Marshal(r.Metadata) // a map of string slices always marshals; keys sorted
		md = string(b)
	}
	return []string{
		strconv.FormatUint(r.Seq, 10), r.Time.UTC().Format(timeLayout), r.Type,
		p.ID, p.Kind, strings.Join(p.Groups, ";"), p.Authn, r.Peer,
		r.Method, r.Upstream,
		idx, decoded, req,
		r.Justification, r.Ticket,
		r.Decision, strings.Join(r.Reasons, "; "), r.BreakglassGrant, r.PolicyVersion,
		ref, r.Code, dur, in, out,
		r.Detail, md,
		r.PrevHash, r.Hash,
		size, r.RequestSHA256, r.RequestTruncated,
		bytesIn, bytesOut, strings.Join(r.RequestUnknownFields, "; "),
	}
}
