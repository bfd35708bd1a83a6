# Policy for etcd behind ztp: automation changes, humans read, and nobody wipes the keyspace.
package ztp

default allow := false

# Methods that change nothing. Everything else counts as mutating, so a method etcd adds
# later is treated as a write until someone lists it here.
reads := {
	"/etcdserverpb.KV/Range",
	"/etcdserverpb.Watch/Watch",
	"/etcdserverpb.Cluster/MemberList",
	"/etcdserverpb.Maintenance/Status",
	"/etcdserverpb.Maintenance/Alarm",
}

automation_writes := {
	"/etcdserverpb.KV/Put",
	"/etcdserverpb.KV/Txn",
	"/etcdserverpb.Lease/LeaseGrant",
	"/etcdserverpb.Lease/LeaseKeepAlive",
}

mutating if not input.method in reads

allow if input.method in reads

allow if {
	input.principal.kind == "automation"
	input.method in automation_writes
	some group in input.principal.groups
	group in data.etcd.writer_groups
}

deny contains "human writes need break-glass" if {
	mutating
	input.principal.kind == "human"
}

deny contains "request not decoded: mutating methods need a readable request" if {
	mutating
	not input.request_decoded
}

deny contains "member remove needs break-glass" if input.method == "/etcdserverpb.Cluster/MemberRemove"

# etcdctl del "" --from-key sends key and range_end both "\x00": every key.
forbid contains "deleting the whole keyspace is forbidden" if {
	input.method == "/etcdserverpb.KV/DeleteRange"
	input.request.key == "AA=="
	input.request.rangeEnd == "AA=="
}

# Without the request nobody can tell whether a DeleteRange is the one above, not even under
# break-glass.
forbid contains "DeleteRange with an unreadable request is forbidden" if {
	input.method == "/etcdserverpb.KV/DeleteRange"
	not input.request_decoded
}

budgets contains {"key": concat(":", ["member-remove", input.upstream]), "cost": 1} if {
	input.method == "/etcdserverpb.Cluster/MemberRemove"
}
