# Tests for etcd.rego: go test ./examples/etcd/ runs them (TestPolicyRegoTests), and so
# will `ztpctl policy test examples/etcd/policies`.
package ztp_test

import data.ztp

deployer := {"id": "spiffe://example.org/ns/prod/sa/deployer", "kind": "automation", "groups": ["deployers"], "authn": "mtls"}

observer := {"id": "spiffe://example.org/ns/prod/sa/observer", "kind": "automation", "groups": ["observers"], "authn": "mtls"}

alice := {"id": "spiffe://example.org/user/alice", "kind": "human", "groups": ["sre"], "authn": "mtls"}

msg(principal, method, request) := {
	"principal": principal,
	"method": method,
	"upstream": "etcd",
	"request": request,
	"request_decoded": true,
}

undecoded(principal, method) := object.union(msg(principal, method, null), {"request_decoded": false})

# passes: allowed, no deny, no forbid: what the proxy forwards.
passes(inp) if {
	ztp.allow with input as inp
	count(ztp.deny) == 0 with input as inp
	count(ztp.forbid) == 0 with input as inp
}

# The requests etcdctl sends, as the proxy decodes them (see the audit log of the e2e test).
put_foo := {"key": "Zm9v", "value": "YmFy"} # put foo bar

del_foo := {"key": "Zm9v"} # del foo

del_prefix := {"key": "Zm9v", "rangeEnd": "Zm9w"} # del foo --prefix

wipe := {"key": "AA==", "rangeEnd": "AA=="} # del "" --from-key (and del "" --prefix)

read_calls := [
	["/etcdserverpb.KV/Range", {"key": "Zm9v"}],
	["/etcdserverpb.Watch/Watch", {"createRequest": {"key": "Zm9v"}}],
	["/etcdserverpb.Watch/Watch", {"cancelRequest": {"watchId": "1"}}],
	["/etcdserverpb.Maintenance/Status", {}],
	["/etcdserverpb.Cluster/MemberList", {}],
	["/etcdserverpb.Lease/LeaseTimeToLive", {"ID": "7587862072907233292", "keys": true}],
	["/etcdserverpb.Lease/LeaseLeases", {}],
	["/etcdserverpb.Maintenance/Alarm", {}], # alarm list, recorded before zero values were rendered
	["/etcdserverpb.Maintenance/Alarm", {"action": "GET", "memberID": "0", "alarm": "NONE"}], # alarm list
]

write_calls := [
	["/etcdserverpb.KV/Put", put_foo],
	["/etcdserverpb.KV/DeleteRange", del_foo],
	["/etcdserverpb.KV/DeleteRange", del_prefix],
	["/etcdserverpb.KV/Txn", {"compare": [{"key": "Zm9v", "target": "VALUE", "value": "YmFy"}], "success": [{"requestPut": put_foo}]}],
	["/etcdserverpb.Lease/LeaseGrant", {"TTL": "60"}],
	["/etcdserverpb.Lease/LeaseRevoke", {"ID": "7587862072907233292"}],
	["/etcdserverpb.Lease/LeaseKeepAlive", {"ID": "7587862072907233292"}],
]

breakglass_methods := [
	"/etcdserverpb.Cluster/MemberAdd",
	"/etcdserverpb.Cluster/MemberRemove",
	"/etcdserverpb.Cluster/MemberUpdate",
	"/etcdserverpb.Cluster/MemberPromote",
	"/etcdserverpb.Maintenance/Defragment",
	"/etcdserverpb.Maintenance/Snapshot",
	"/etcdserverpb.Maintenance/MoveLeader",
	"/etcdserverpb.KV/Compact",
	"/etcdserverpb.Auth/AuthEnable",
	"/etcdserverpb.Auth/AuthDisable",
	"/etcdserverpb.Auth/UserAdd",
	"/etcdserverpb.Auth/RoleGrantPermission",
	"/etcdserverpb.Auth/Authenticate",
	"/etcdserverpb.Auth/UserList",
	"/etcdserverpb.Maintenance/Downgrade", # etcd 3.5+: unknown here, so a write
]

test_everyone_may_read if {
	every p in [deployer, observer, alice] {
		every c in read_calls {
			passes(msg(p, c[0], c[1]))
		}
	}
}

test_deployer_may_write if {
	every c in write_calls {
		passes(msg(deployer, c[0], c[1]))
	}
}

test_unknown_fields_stop_writes_not_reads if {
	put := object.union(msg(deployer, "/etcdserverpb.KV/Put", put_foo), {"request_unknown_fields": ["7"]})
	not passes(put)
	ztp.deny == {"request has fields etcd.protoset does not describe (7): update the protoset"} with input as put
	passes(object.union(msg(deployer, "/etcdserverpb.KV/Range", {"key": "Zm9v"}), {"request_unknown_fields": ["7"]}))
	passes(object.union(msg(deployer, "/etcdserverpb.KV/Put", put_foo), {"request_unknown_fields": []}))
}

test_human_writes_need_breakglass if {
	every c in write_calls {
		inp := msg(alice, c[0], c[1])
		not ztp.allow with input as inp
		ztp.deny == {"human writes need break-glass"} with input as inp
		count(ztp.forbid) == 0 with input as inp
	}
}

test_automation_outside_deployers_may_not_write if {
	every c in write_calls {
		inp := msg(observer, c[0], c[1])
		not ztp.allow with input as inp
		ztp.deny == {"writes need automation in group deployers"} with input as inp
	}
}

test_admin_methods_need_breakglass_for_everyone if {
	every m in breakglass_methods {
		every p in [deployer, observer] {
			inp := msg(p, m, {})
			not ztp.allow with input as inp
			ztp.deny == {sprintf("%s needs break-glass", [m])} with input as inp
		}
		ztp.deny == {"human writes need break-glass", sprintf("%s needs break-glass", [m])} with input as msg(alice, m, {})
	}
}

test_member_remove_reason if {
	"/etcdserverpb.Cluster/MemberRemove needs break-glass" in ztp.deny with input as msg(deployer, "/etcdserverpb.Cluster/MemberRemove", {"ID": "42"})
}

test_alarm_disarm_needs_breakglass if {
	inp := msg(deployer, "/etcdserverpb.Maintenance/Alarm", {"action": "DEACTIVATE", "memberID": "1", "alarm": "NOSPACE"})
	not ztp.allow with input as inp
	"/etcdserverpb.Maintenance/Alarm needs break-glass" in ztp.deny with input as inp
}

test_keyspace_wipe_forbidden if {
	every req in [
		wipe,
		{"rangeEnd": "AA=="}, # key "" (absent in records written before zero values were rendered)
		{"key": "", "rangeEnd": "AA=="},
	] {
		every p in [deployer, alice] {
			ztp.forbid == {"deleting the whole keyspace is forbidden"} with input as msg(p, "/etcdserverpb.KV/DeleteRange", req)
		}
	}
}

test_keyspace_wipe_inside_txn_forbidden if {
	nested := {"success": [{"requestTxn": {"failure": [{"requestPut": put_foo}, {"requestDeleteRange": wipe}]}}]}
	ztp.forbid == {"deleting the whole keyspace is forbidden"} with input as msg(deployer, "/etcdserverpb.KV/Txn", nested)
}

test_txn_without_wipe_not_forbidden if {
	txn := {"success": [{"requestDeleteRange": del_prefix}, {"requestRange": wipe}]} # a ranged read is harmless
	passes(msg(deployer, "/etcdserverpb.KV/Txn", txn))
}

test_open_ended_delete_needs_breakglass if {
	reason := "open-ended delete (--from-key) needs break-glass"
	from_foo := {"key": "Zm9v", "rangeEnd": "AA=="} # del foo --from-key
	ztp.deny == {reason} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", from_foo)
	count(ztp.forbid) == 0 with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", from_foo)
	ztp.deny == {reason} with input as msg(deployer, "/etcdserverpb.KV/Txn", {"success": [{"requestDeleteRange": from_foo}]})
}

test_undecoded_writes_denied if {
	every c in write_calls {
		inp := undecoded(deployer, c[0])
		not passes(inp)
		"request not decoded: mutating methods need a readable request" in ztp.deny with input as inp
	}
}

test_undecoded_delete_and_txn_forbidden if {
	every m in ["/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn"] {
		ztp.forbid == {"DeleteRange or Txn with an unreadable request is forbidden"} with input as undecoded(deployer, m)
	}
}

test_undecoded_alarm_is_not_a_read if {
	inp := undecoded(alice, "/etcdserverpb.Maintenance/Alarm")
	not ztp.allow with input as inp
	"request not decoded: mutating methods need a readable request" in ztp.deny with input as inp
}

test_undecoded_reads_allowed if {
	methods := {c[0] | some c in read_calls} - {"/etcdserverpb.Maintenance/Alarm"}
	count(methods) == 6
	every m in methods {
		passes(undecoded(alice, m))
	}
}

test_unknown_service_not_allowed if {
	inp := msg(deployer, "/v3lockpb.Lock/Lock", {"name": "bG9jaw=="})
	not ztp.allow with input as inp
	"/v3lockpb.Lock/Lock needs break-glass" in ztp.deny with input as inp
}

test_too_complex_denied_reads_too if {
	every m in ["/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch", "/etcdserverpb.KV/Txn"] {
		inp := object.union(undecoded(alice, m), {"request_undecoded_reason": "too_complex"})
		not passes(inp)
		"request too complex to decode (limits.max_decoded_nodes, limits.max_decode_depth)" in ztp.deny with input as inp
	}
}
