# Helpers for ztp policies, shipped with ztp and loaded by the proxy and ztpctl whenever a
# policy refers to data.ztp.lib:
#
#     package ztp
#
#     import data.ztp.lib
#
#     deny contains "humans change things only under break-glass" if {
#         lib.mutating
#         lib.is_human
#     }
#
# Every helper fails safe: a method it cannot classify is mutating, and a key range it
# cannot read touches everything.
package ztp.lib

# RPC name prefixes that, by the naming conventions of gRPC admin APIs, only read. A prefix
# counts when the name is exactly the prefix or the prefix is followed by an upper-case
# letter or a digit: "List" classifies ListMachines but not Listen.
read_only_prefixes := [
	"Check",
	"Count",
	"Describe",
	"Fetch",
	"Get",
	"Health",
	"List",
	"Lookup",
	"Query",
	"Range",
	"Read",
	"Search",
	"Show",
	"Status",
	"Watch",
]

# read_only_rpc(name) is true when the RPC name starts with one of read_only_prefixes.
read_only_rpc(name) if {
	some prefix in read_only_prefixes
	startswith(name, prefix)
	regex.match(`^([A-Z0-9].*)?$`, trim_prefix(name, prefix))
}

# mutating_rpc(name) is true for every RPC name that is not read-only by convention,
# including names nobody has classified yet.
mutating_rpc(name) if not read_only_rpc(name)

# read_only and mutating classify the RPC of the message being decided (input.rpc). A
# message without an rpc is mutating.
read_only if read_only_rpc(input.rpc)

mutating if not read_only

# Principal helpers.
is_human if input.principal.kind == "human"

is_automation if input.principal.kind == "automation"

# in_group(g) is true when the principal is in group g.
in_group(g) if g in input.principal.groups

# in_any_group(gs) is true when the principal is in at least one of the groups gs.
in_any_group(gs) if {
	some g in gs
	g in input.principal.groups
}

# principal_matches(pattern) matches the principal id against a glob in which "*" stays
# within one path segment, as in the identity.principals rules of ztp.yaml.
principal_matches(pattern) if glob.match(pattern, ["/"], input.principal.id)

# Context of the change.
has_justification if trim_space(object.get(input, "justification", "")) != ""

has_ticket if trim_space(object.get(input, "ticket", "")) != ""

breakglass_active if input.breakglass.active == true

# ---------------------------------------------------------------------------------------
# Key ranges of etcd-style requests: {"key": base64, "rangeEnd": base64} as protojson prints
# RangeRequest, DeleteRangeRequest and PutRequest. Keys compare byte by byte.
#
# A request's range is normalised to {"start": s, "end": e}, the half-open interval [s, e):
#   - no rangeEnd (or an empty one): the single key s, so e = s + "\x00";
#   - rangeEnd "\x00" (AA==): every key >= s, so e = null (unbounded);
#   - otherwise e = rangeEnd.

# key_range(req) is the normalised range of one request message with a key.
key_range(req) := {"start": base64.decode(req.key), "end": range_end(req)}

range_end(req) := null if {
	base64.decode(object.get(req, "rangeEnd", "")) == "\u0000"
} else := concat("", [base64.decode(req.key), "\u0000"]) if {
	object.get(req, "rangeEnd", "") == ""
} else := base64.decode(req.rangeEnd)

# Operations inside a Txn (success and failure branches) that carry a key.
txn_ops contains op if {
	is_object(input.request)
	some branch in ["success", "failure"]
	some item in object.get(input.request, branch, [])
	some field in ["requestRange", "requestPut", "requestDeleteRange"]
	op := item[field]
}

# key_ranges: every range the message touches: its own key, or those of its Txn operations
# (one level deep; see txn_nested).
key_ranges contains key_range(input.request) if input.request.key

key_ranges contains key_range(op) if some op in txn_ops

# txn_nested is true when a Txn contains another Txn, whose ranges key_ranges does not
# list. Deny such requests where key ranges matter.
txn_nested if {
	is_object(input.request)
	some branch in ["success", "failure"]
	some item in object.get(input.request, branch, [])
	item.requestTxn
}

# overlaps(r, start, end) is true when range r intersects [start, end); end null is
# unbounded.
overlaps(r, start, end) if {
	below(r.start, end)
	below(start, r.end)
}

below(_, end) if end == null

below(x, end) if {
	end != null
	x < end
}

# range_touches_prefix(r, p) is true when range r contains a key that starts with p: the
# keys with prefix p are [p, p') for the next prefix p', and r.start < p' exactly when
# r.start < p or r.start itself starts with p.
range_touches_prefix(r, p) if {
	r.start < p
	below(p, r.end)
}

range_touches_prefix(r, p) if startswith(r.start, p)

# touches_prefix(p) is true when the message touches a key starting with p (a plain
# string, e.g. "/config/"). Undecoded requests touch everything.
touches_prefix(p) if {
	some r in key_ranges
	range_touches_prefix(r, p)
}

touches_prefix(_) if not input.request_decoded

# touches_key(k) is true when the message touches key k.
touches_key(k) if {
	some r in key_ranges
	overlaps(r, k, concat("", [k, "\u0000"]))
}

touches_key(_) if not input.request_decoded

# touches_range(start, end) is true when the message touches a key in [start, end); end
# null is unbounded.
touches_range(start, end) if {
	some r in key_ranges
	overlaps(r, start, end)
}

touches_range(_, _) if not input.request_decoded

# whole_keyspace is true when a range covers every key: etcdctl del "" --from-key sends
# key "\x00" and rangeEnd "\x00".
whole_keyspace if {
	some r in key_ranges
	r.start in {"", "\u0000"}
	r.end == null
}
