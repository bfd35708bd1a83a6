package ztp_test

import data.ztp

deployer := {"id": "spiffe://example.org/ns/prod/sa/deployer", "kind": "automation", "groups": ["deployers"], "authn": "mtls"}

alice := {"id": "spiffe://example.org/user/alice", "kind": "human", "groups": ["sre"], "authn": "mtls"}

msg(principal, method, request) := {
	"principal": principal,
	"method": method,
	"upstream": "etcd",
	"request": request,
	"request_decoded": true,
}

test_human_may_read if {
	ztp.allow with input as msg(alice, "/etcdserverpb.KV/Range", {"key": "Zm9v"})
	count(ztp.deny) == 0 with input as msg(alice, "/etcdserverpb.KV/Range", {"key": "Zm9v"})
}

test_deployer_may_put if {
	inp := msg(deployer, "/etcdserverpb.KV/Put", {"key": "Zm9v", "value": "YmFy"})
	ztp.allow with input as inp
	count(ztp.deny) == 0 with input as inp
}

test_human_put_denied if {
	inp := msg(alice, "/etcdserverpb.KV/Put", {"key": "Zm9v", "value": "YmFy"})
	not ztp.allow with input as inp
	"human writes need break-glass" in ztp.deny with input as inp
}

test_automation_outside_deployers_not_allowed if {
	other := object.union(deployer, {"groups": ["observers"]})
	not ztp.allow with input as msg(other, "/etcdserverpb.KV/Put", {"key": "Zm9v"})
}

test_undecoded_write_denied if {
	inp := object.union(msg(deployer, "/etcdserverpb.KV/Put", null), {"request_decoded": false})
	some reason in ztp.deny with input as inp
	startswith(reason, "request not decoded")
}

test_keyspace_delete_forbidden if {
	inp := msg(deployer, "/etcdserverpb.KV/DeleteRange", {"key": "AA==", "rangeEnd": "AA=="})
	"deleting the whole keyspace is forbidden" in ztp.forbid with input as inp
}

test_prefix_delete_not_forbidden if {
	count(ztp.forbid) == 0 with input as msg(alice, "/etcdserverpb.KV/DeleteRange", {"key": "Zm9v", "rangeEnd": "Zm9w"})
}

test_member_remove_denied_and_budgeted if {
	inp := msg(deployer, "/etcdserverpb.Cluster/MemberRemove", {"ID": "42"})
	"member remove needs break-glass" in ztp.deny with input as inp
	ztp.budgets == {{"key": "member-remove:etcd", "cost": 1}} with input as inp
}
