# ztp policy for etcd's v3 API (etcd 3.4, descriptors from ../etcd.protoset).
#
# Zero Touch Prod for etcd: every authenticated principal may read; only automation in
# group "deployers" may change keys and leases; a human who must change something needs a
# break-glass grant (which overrides deny, never forbid); cluster membership, maintenance,
# auth and snapshots need break-glass for everyone; wiping the whole keyspace is forbidden
# outright. Anything this file does not name is treated as a write, so a method a newer
# etcd adds is refused until someone reviews it and lists it here.
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
# a Txn (success and failure branches, and transactions nested in those).
deletes contains input.request if {
	input.method == "/etcdserverpb.KV/DeleteRange"
	input.request_decoded
}

deletes contains del if {
	input.method == "/etcdserverpb.KV/Txn"
	input.request_decoded
	walk(input.request, [path, del])
	count(path) > 0
	path[count(path) - 1] == "requestDeleteRange"
	is_object(del) # always, from protojson; anything else must not become an evaluation error
}

# rangeEnd "\x00" means "every key >= key". With key "\x00" (what `etcdctl del ""
# --from-key` sends) or the empty key ("", `etcdctl del "" --prefix`)
# that is the whole keyspace.
whole_keyspace(del) if {
	object.get(del, "rangeEnd", "") == "AA=="
	object.get(del, "key", "") in {"", "AA=="}
}

forbid contains "deleting the whole keyspace is forbidden" if {
	some del in deletes
	whole_keyspace(del)
}

# Any other open-ended delete (`etcdctl del KEY --from-key`) removes every key sorting
# after KEY: a person should look at it first.
deny contains "open-ended delete (--from-key) needs break-glass" if {
	some del in deletes
	object.get(del, "rangeEnd", "") == "AA=="
	not whole_keyspace(del)
}

# Without the request nobody can tell whether a delete is the wipe above, not even under
# break-glass.
forbid contains "DeleteRange or Txn with an unreadable request is forbidden" if {
	input.method in {"/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn"}
	not input.request_decoded
}
