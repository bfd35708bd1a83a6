# ztp policy for etcd's v3 API (etcd 3.4, descriptors from ../etcd.protoset).
#
# Zero Touch Prod for etcd: every authenticated principal may read; only automation in
# group "deployers" may change keys and leases; a human who must change something needs a
# break-glass grant (which overrides deny, never forbid); cluster membership, maintenance,
# auth and snapshots need break-glass for everyone. Anything this file does not name is
# treated as a write, so a method a newer etcd adds is refused until someone reviews it and
# lists it here.
#
# Deletes are judged by their effect, not by how they are spelt: before deciding, the
# policy asks etcd (ztp.query, read-only; ztp.yaml's effect_queries) how many keys a call
# would remove, and how many keys a human's ranged read would return. No single call may
# remove more than max_keys_per_call keys, break-glass or not (forbid), and budgets.rego
# charges each removed key to the hourly delete budget.
#
# Requests arrive as protojson: bytes are base64 ("Zm9v" is "foo", "AA==" is "\x00"),
# 64-bit integers are strings, fields left at their zero value are present with it ("",
# "0", false, the enum's first value). The object.get defaults below also cover records
# written before the proxy rendered zero values, replayed without descriptors.
package ztp

default allow := false

# Methods that change nothing. Watch is a bidi stream whose every client message
# (createRequest, cancelRequest, progressRequest) is decided here and is read-only.
reads := {
	"/etcdserverpb.KV/Range",
	"/etcdserverpb.Watch/Watch",
	"/etcdserverpb.Maintenance/Status",
	"/etcdserverpb.Cluster/MemberList",
	"/etcdserverpb.Lease/LeaseTimeToLive",
	"/etcdserverpb.Lease/LeaseLeases",
}

# Day-to-day changes that automation makes. LeaseKeepAlive is a bidi stream: every
# keep-alive message is decided, so each must pass.
automation_writes := {
	"/etcdserverpb.KV/Put",
	"/etcdserverpb.KV/DeleteRange",
	"/etcdserverpb.KV/Txn",
	"/etcdserverpb.Lease/LeaseGrant",
	"/etcdserverpb.Lease/LeaseRevoke",
	"/etcdserverpb.Lease/LeaseKeepAlive",
}

# Groups whose automation may make automation_writes.
writer_groups := {"deployers"}

read if input.method in reads

# `etcdctl alarm list` sends Alarm with action GET, the enum's zero value; ACTIVATE and
# DEACTIVATE change the cluster. Only a decoded request can tell.
read if {
	input.method == "/etcdserverpb.Maintenance/Alarm"
	input.request_decoded
	object.get(input.request, "action", "GET") == "GET"
	object.get(input.request, "alarm", "NONE") == "NONE"
}

mutating if not read

deployer if {
	input.principal.kind == "automation"
	some group in input.principal.groups
	group in writer_groups
}

allow if read

allow if {
	deployer
	input.method in automation_writes
}

deny contains "human writes need break-glass" if {
	mutating
	input.principal.kind == "human"
}

deny contains "writes need automation in group deployers" if {
	input.method in automation_writes
	input.principal.kind == "automation"
	not deployer
}

# Membership, maintenance (defragment, snapshot, move-leader, compaction...), auth and
# every method not listed above: break-glass for everyone. A snapshot is listed by
# omission: it hands out every key and value at once.
deny contains sprintf("%s needs break-glass", [input.method]) if {
	mutating
	not input.method in automation_writes
}

# The policy cannot see into a request it could not decode, so it cannot admit a change
# it cannot read (for example after an etcd upgrade the protoset does not describe yet).
deny contains "request not decoded: mutating methods need a readable request" if {
	mutating
	not input.request_decoded
}

# A message over the proxy's decode limits (limits.max_decoded_nodes, max_decode_depth) is
# not decoded at all. No etcd request of a real client comes near them, and a read padded
# past them (with unknown fields, which etcd ignores) would hide what it reads.
deny contains "request too complex to decode (limits.max_decoded_nodes, limits.max_decode_depth)" if {
	object.get(input, "request_undecoded_reason", "") == "too_complex"
}

# A field the descriptor set does not describe is left out of input.request (protojson
# drops it) but still reaches etcd, so a change carrying one cannot be judged; the proxy
# lists where such fields are in input.request_unknown_fields. Reads are let through.
deny contains sprintf("request has fields etcd.protoset does not describe (%s): update the protoset", [concat(", ", unknown)]) if {
	mutating
	unknown := object.get(input, "request_unknown_fields", [])
	count(unknown) > 0
}

# Every DeleteRange a message asks for: the request itself, or one nested anywhere inside
# a Txn (success and failure branches, and transactions nested in those). Both branches
# count: which one runs is only known when etcd evaluates the compares.
deletes contains input.request if {
	input.method == "/etcdserverpb.KV/DeleteRange"
	input.request_decoded
}

deletes contains del if {
	input.method == "/etcdserverpb.KV/Txn"
	some del in txn_ops("requestDeleteRange")
}

# Every Put: the request itself or one inside a Txn, at any depth.
puts contains input.request if {
	input.method == "/etcdserverpb.KV/Put"
	input.request_decoded
}

puts contains put if {
	input.method == "/etcdserverpb.KV/Txn"
	some put in txn_ops("requestPut")
}

txn_ops(field) := {op |
	input.request_decoded
	walk(input.request, [path, op])
	count(path) > 0
	path[count(path) - 1] == field
	is_object(op) # always, from protojson; anything else must not become an evaluation error
}

# ---------------------------------------------------------------------------------------
# Effect queries. query wraps the built-in so that tests can mock it: in a test that
# imports data.ztp, `with ztp.query as ...` replaces this rule.
query(method, request) := ztp.query(method, request)

# No single call may remove more keys than this, whoever asks, break-glass included.
# Keep it at or below the delete budget in ztp.yaml (budgets: delete:).
max_keys_per_call := 50

# A human's read that would return more keys than this needs break-glass, as Snapshot does.
max_keys_per_read := 100

# A human's range watch must stay inside a prefix of at least this many bytes (its key and
# range end agree on them); a wider watch streams every change to the keyspace.
min_watch_prefix_bytes := 1

# keys_in(req) is how many keys exist now in the range of req ({"key", "rangeEnd"} as
# protojson renders Range, DeleteRange and Put requests): a count-only Range of the same
# range. No etcd key is empty, so an empty start means "\x00" (etcd refuses an empty key).
keys_in(req) := keys_at(req, "0")

# keys_at(req, rev) counts at revision rev ("0": the current one), as a Range with
# revision reads the keyspace as it was then.
keys_at(req, rev) := to_number(object.get(answer, "count", "0")) if {
	answer := query("/etcdserverpb.KV/Range", {
		"key": nonempty_key(req),
		"rangeEnd": object.get(req, "rangeEnd", ""),
		"revision": rev,
		"countOnly": true,
	})
}

nonempty_key(req) := k if {
	k := object.get(req, "key", "")
	k != ""
} else := "AA=="

# Keys a Put would attach to a lease: an existing key put with a lease goes when the lease
# is revoked or expires, so attaching it counts as deleting it. A new key is not counted
# (it holds nothing that existed before); a put without a lease detaches, removing nothing.
leased(put) if object.get(put, "lease", "0") != "0"

leased_existing(put) := keys_in({"key": object.get(put, "key", "")}) if leased(put)

leased_existing(put) := 0 if not leased(put)

# The keys a LeaseRevoke removes: those attached to the lease now, as LeaseTimeToLive with
# keys lists them.
revoked_keys := count(object.get(answer, "keys", [])) if {
	input.method == "/etcdserverpb.Lease/LeaseRevoke"
	input.request_decoded
	answer := query("/etcdserverpb.Lease/LeaseTimeToLive", {"ID": object.get(input.request, "ID", "0"), "keys": true})
}

# keys_removed is how many keys the message removes (or hands to a lease), as etcd says
# now. Deletes in a Txn are added up even when their ranges overlap: it may count a key
# twice, never miss one.
keys_removed := (sum([keys_in(del) | some del in deletes]) + sum([leased_existing(put) | some put in puts])) + sum([n | n := revoked_keys])

forbid contains sprintf("the call would remove %d keys; at most %d may go in one call", [keys_removed, max_keys_per_call]) if {
	keys_removed > max_keys_per_call
}

# An open-ended delete (`etcdctl del KEY --from-key`) removes every key sorting after KEY,
# also those written after this check: a person should look at it first.
deny contains "open-ended delete (--from-key) needs break-glass" if {
	some del in deletes
	object.get(del, "rangeEnd", "") == "AA=="
}

# Without the request nobody can tell what a delete, a leased put or a revoke removes, not
# even under break-glass.
forbid contains sprintf("%s with an unreadable request is forbidden", [input.method]) if {
	input.method in {"/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn", "/etcdserverpb.KV/Put", "/etcdserverpb.Lease/LeaseRevoke"}
	not input.request_decoded
}

# ---------------------------------------------------------------------------------------
# Bulk reads by humans: like a Snapshot, reading a large part of the keyspace at once needs
# break-glass.

# A ranged Range returns min(keys in the range, limit) keys, at its revision (`get --rev`
# reads the past, when more keys may have been there); a count-only one returns none.
deny contains sprintf("reading %d keys at once needs break-glass (more than %d)", [n, max_keys_per_read]) if {
	input.principal.kind == "human"
	input.method == "/etcdserverpb.KV/Range"
	input.request_decoded
	object.get(input.request, "rangeEnd", "") != ""
	not object.get(input.request, "countOnly", false)
	n := returned(input.request)
	n > max_keys_per_read
}

returned(req) := n if {
	limit := to_number(object.get(req, "limit", "0"))
	limit > 0
	n := min({limit, keys_at(req, object.get(req, "revision", "0"))})
} else := keys_at(req, object.get(req, "revision", "0"))

# `lease timetolive --keys` lists the names of every key attached to the lease.
deny contains sprintf("listing %d keys of a lease needs break-glass (more than %d)", [n, max_keys_per_read]) if {
	input.principal.kind == "human"
	input.method == "/etcdserverpb.Lease/LeaseTimeToLive"
	input.request_decoded
	object.get(input.request, "keys", false) == true
	n := count(object.get(query("/etcdserverpb.Lease/LeaseTimeToLive", {"ID": object.get(input.request, "ID", "0"), "keys": true}), "keys", []))
	n > max_keys_per_read
}

# A range watch sees the keys in its range now and every change to the range from then on.
watch_create := create if {
	input.method == "/etcdserverpb.Watch/Watch"
	input.request_decoded
	create := input.request.createRequest
	is_object(create)
}

range_watch if object.get(watch_create, "rangeEnd", "") != ""

deny contains sprintf("watching a range of %d keys needs break-glass (more than %d)", [n, max_keys_per_read]) if {
	input.principal.kind == "human"
	range_watch
	n := keys_in(watch_create)
	n > max_keys_per_read
}

# A watch from a past revision replays every change to the range since then: its history
# can be far larger than what the range holds now.
deny contains "watching the history of a range (--rev) needs break-glass" if {
	input.principal.kind == "human"
	range_watch
	object.get(watch_create, "startRevision", "0") != "0"
}

deny contains sprintf("watching a range wider than a %d-byte prefix needs break-glass", [min_watch_prefix_bytes]) if {
	input.principal.kind == "human"
	range_watch
	not within_prefix(watch_create)
}

# within_prefix(req) is true when the range's key and range end start with the same
# min_watch_prefix_bytes bytes, so the range lies inside that prefix. Compared in hex: a
# key is bytes, not necessarily UTF-8. An open-ended range ("\x00") never is.
within_prefix(req) if {
	object.get(req, "rangeEnd", "") != "AA=="
	n := 2 * min_watch_prefix_bytes
	start := hex.encode(base64.decode(object.get(req, "key", "")))
	end := hex.encode(base64.decode(object.get(req, "rangeEnd", "")))
	count(start) >= n
	count(end) >= n
	substring(start, 0, n) == substring(end, 0, n)
}
