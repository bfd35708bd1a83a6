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

# ---------------------------------------------------------------------------------------
# A stand-in for etcd's answers to the policy's effect queries (ztp.query, mocked in every
# test `with ztp.query as etcd`): a count-only Range over keyspace, LeaseTimeToLive over
# leases. Keys are plain strings here, base64 in requests as on the wire.
bulk_keys := {sprintf("/bulk/%03d", [i]) | some i in numbers.range(1, 120)}

keyspace := {"foo", "foo/a", "foo/b", "bar", "/e2e/txn"} | bulk_keys

lease_id := "7587862072907233292"

leases := {lease_id: [base64.encode("foo/a"), base64.encode("foo/b")]}

etcd("/etcdserverpb.KV/Range", req) := {"header": {"revision": "42"}, "count": sprintf("%d", [count(in_range(req))])} if {
	req.countOnly == true
	object.get(req, "revision", "0") == "0"
}

# At revision 7 the bulk keys were there, and 80 more since deleted.
etcd("/etcdserverpb.KV/Range", req) := {"header": {"revision": "42"}, "count": sprintf("%d", [count(in_range(req)) + 80])} if {
	req.countOnly == true
	req.revision == "7"
}

etcd("/etcdserverpb.Lease/LeaseTimeToLive", req) := {"ID": req.ID, "TTL": "-1"} if {
	req.keys == true
	not leases[req.ID]
}

etcd("/etcdserverpb.Lease/LeaseTimeToLive", req) := {"ID": req.ID, "TTL": "50", "grantedTTL": "60", "keys": leases[req.ID]} if {
	req.keys == true
}

in_range(req) := {k | k := base64.decode(req.key); k in keyspace} if {
	object.get(req, "rangeEnd", "") == ""
}

in_range(req) := {k | some k in keyspace; k >= start} if {
	req.rangeEnd == "AA=="
	start := base64.decode(req.key)
}

in_range(req) := {k | some k in keyspace; k >= start; k < end} if {
	not object.get(req, "rangeEnd", "") in {"", "AA=="}
	start := base64.decode(req.key)
	end := base64.decode(req.rangeEnd)
}

# passes: allowed, no deny, no forbid: what the proxy forwards.
passes(inp) if {
	ztp.allow with input as inp with ztp.query as etcd
	count(ztp.deny) == 0 with input as inp with ztp.query as etcd
	count(ztp.forbid) == 0 with input as inp with ztp.query as etcd
}

# The requests etcdctl sends, as the proxy decodes them (see the audit log of the e2e test).
put_foo := {"key": "Zm9v", "value": "YmFy"} # put foo bar

del_foo := {"key": "Zm9v"} # del foo

del_prefix := {"key": "Zm9v", "rangeEnd": "Zm9w"} # del foo --prefix

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
	ztp.deny == {"request has fields etcd.protoset does not describe (7): update the protoset"} with input as put with ztp.query as etcd
	passes(object.union(msg(deployer, "/etcdserverpb.KV/Range", {"key": "Zm9v"}), {"request_unknown_fields": ["7"]}))
	passes(object.union(msg(deployer, "/etcdserverpb.KV/Put", put_foo), {"request_unknown_fields": []}))
}

test_human_writes_need_breakglass if {
	every c in write_calls {
		inp := msg(alice, c[0], c[1])
		not ztp.allow with input as inp with ztp.query as etcd
		ztp.deny == {"human writes need break-glass"} with input as inp with ztp.query as etcd
		count(ztp.forbid) == 0 with input as inp with ztp.query as etcd
	}
}

test_automation_outside_deployers_may_not_write if {
	every c in write_calls {
		inp := msg(observer, c[0], c[1])
		not ztp.allow with input as inp with ztp.query as etcd
		ztp.deny == {"writes need automation in group deployers"} with input as inp with ztp.query as etcd
	}
}

test_admin_methods_need_breakglass_for_everyone if {
	every m in breakglass_methods {
		every p in [deployer, observer] {
			inp := msg(p, m, {})
			not ztp.allow with input as inp with ztp.query as etcd
			ztp.deny == {sprintf("%s needs break-glass", [m])} with input as inp with ztp.query as etcd
		}
		ztp.deny == {"human writes need break-glass", sprintf("%s needs break-glass", [m])} with input as msg(alice, m, {}) with ztp.query as etcd
	}
}

test_member_remove_reason if {
	"/etcdserverpb.Cluster/MemberRemove needs break-glass" in ztp.deny with input as msg(deployer, "/etcdserverpb.Cluster/MemberRemove", {"ID": "42"}) with ztp.query as etcd
}

test_alarm_disarm_needs_breakglass if {
	inp := msg(deployer, "/etcdserverpb.Maintenance/Alarm", {"action": "DEACTIVATE", "memberID": "1", "alarm": "NOSPACE"})
	not ztp.allow with input as inp with ztp.query as etcd
	"/etcdserverpb.Maintenance/Alarm needs break-glass" in ztp.deny with input as inp with ztp.query as etcd
}

# What the whole keyspace is in these tests: 125 keys.
all_keys := count(keyspace)

too_many(n) := {sprintf("the call would remove %d keys; at most 50 may go in one call", [n])}

# Every spelling of "everything" (and "everything under /") removes what etcd holds in the
# range, more than max_keys_per_call here: forbidden for everyone, break-glass included.
wipes := [
	{"key": "AA==", "rangeEnd": "AA=="}, # del "" --from-key, del "" --prefix
	{"key": "AQ==", "rangeEnd": "/////w=="}, # del $'\x01' $'\xff\xff\xff\xff'
	{"key": "", "rangeEnd": "AA=="}, # key "" (as the proxy renders zero values), rangeEnd "\x00"
	{"rangeEnd": "AA=="}, # the same, in records written before zero values were rendered
]

test_keyspace_wipe_forbidden if {
	every req in wipes {
		every p in [deployer, alice, object.union(alice, {"breakglass": {"active": true}})] {
			ztp.forbid == too_many(all_keys) with input as msg(p, "/etcdserverpb.KV/DeleteRange", req) with ztp.query as etcd
		}
	}

	# del --prefix /: every key under "/", 121 of them.
	ztp.forbid == too_many(121) with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", {"key": "Lw==", "rangeEnd": "MA=="}) with ztp.query as etcd
}

test_breakglass_does_not_lift_forbid if {
	inp := object.union(msg(alice, "/etcdserverpb.KV/DeleteRange", wipes[1]), {"breakglass": {"active": true, "grant": "g-1"}})
	count(ztp.forbid) == 1 with input as inp with ztp.query as etcd
}

test_keyspace_wipe_inside_txn_forbidden if {
	nested := {"success": [{"requestTxn": {"failure": [{"requestPut": put_foo}, {"requestDeleteRange": wipes[1]}]}}]}
	ztp.forbid == too_many(all_keys) with input as msg(deployer, "/etcdserverpb.KV/Txn", nested) with ztp.query as etcd
}

# Deletes that stay under the maximum one by one are added up within a call.
test_txn_deletes_added_up_against_the_maximum if {
	two := {"success": [
		{"requestDeleteRange": {"key": base64.encode("/bulk/0"), "rangeEnd": base64.encode("/bulk/1")}}, # 99 keys
		{"requestDeleteRange": del_prefix}, # 3 keys
	]}
	ztp.forbid == too_many(102) with input as msg(deployer, "/etcdserverpb.KV/Txn", two) with ztp.query as etcd
	small := {"failure": [{"requestDeleteRange": {"key": base64.encode("/bulk/00"), "rangeEnd": base64.encode("/bulk/01")}}]} # 9 keys
	passes(msg(deployer, "/etcdserverpb.KV/Txn", small))
}

test_small_wipe_is_charged_not_forbidden if {
	# The same spelling on a small keyspace removes few keys: what it costs is what it removes.
	inp := msg(deployer, "/etcdserverpb.KV/DeleteRange", wipes[1])
	small := {"foo", "bar"}
	count(ztp.forbid) == 0 with input as inp with ztp.query as etcd with keyspace as small
	ztp.budgets == {{"key": "delete:etcd", "cost": 2}} with input as inp with ztp.query as etcd with keyspace as small
}

test_txn_without_wipe_not_forbidden if {
	txn := {"success": [{"requestDeleteRange": del_prefix}, {"requestRange": wipes[0]}]} # a ranged read is harmless
	passes(msg(deployer, "/etcdserverpb.KV/Txn", txn))
}

test_open_ended_delete_needs_breakglass if {
	reason := "open-ended delete (--from-key) needs break-glass"
	from_foo := {"key": "Zm9v", "rangeEnd": "AA=="} # del foo --from-key: foo, foo/a, foo/b
	ztp.deny == {reason} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", from_foo) with ztp.query as etcd
	count(ztp.forbid) == 0 with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", from_foo) with ztp.query as etcd
	ztp.deny == {reason} with input as msg(deployer, "/etcdserverpb.KV/Txn", {"success": [{"requestDeleteRange": from_foo}]}) with ztp.query as etcd
}

# Revoking a lease removes the keys attached to it: more than the maximum is forbidden.
test_revoking_a_crowded_lease_forbidden if {
	crowded := {"99": [base64.encode(k) | some k in bulk_keys]}
	ztp.forbid == too_many(120) with input as msg(deployer, "/etcdserverpb.Lease/LeaseRevoke", {"ID": "99"}) with ztp.query as etcd with leases as crowded
}

# Attaching many existing keys to a lease in one Txn is as good as deleting them.
test_leasing_many_existing_keys_forbidden if {
	ops := [{"requestPut": {"key": base64.encode(k), "lease": lease_id, "ignoreValue": true}} | some k in bulk_keys]
	ztp.forbid == too_many(120) with input as msg(deployer, "/etcdserverpb.KV/Txn", {"success": ops}) with ztp.query as etcd
}

# ---------------------------------------------------------------------------------------
# Bulk reads by humans need break-glass; automation and small reads do not.

read_everything := {"key": "AA==", "rangeEnd": "AA=="} # get "" --from-key, get "" --prefix

test_human_bulk_range_needs_breakglass if {
	inp := msg(alice, "/etcdserverpb.KV/Range", read_everything)
	ztp.deny == {"reading 125 keys at once needs break-glass (more than 100)"} with input as inp with ztp.query as etcd
	count(ztp.forbid) == 0 with input as inp with ztp.query as etcd # a grant lets it through
	ztp.deny == {"reading 121 keys at once needs break-glass (more than 100)"} with input as msg(alice, "/etcdserverpb.KV/Range", {"key": "Lw==", "rangeEnd": "MA=="}) with ztp.query as etcd
	ztp.deny == {"reading 125 keys at once needs break-glass (more than 100)"} with input as msg(alice, "/etcdserverpb.KV/Range", {"key": "AQ==", "rangeEnd": "/////w==", "limit": "500"}) with ztp.query as etcd
}

test_small_or_limited_or_counted_reads_pass if {
	every req in [
		{"key": "Zm9v", "rangeEnd": "Zm9w"}, # get --prefix foo: 3 keys
		object.union(read_everything, {"limit": "100"}), # etcdctl get --limit 100
		object.union(read_everything, {"countOnly": true}), # get --count-only
		{"key": "Zm9v"}, # one key
	] {
		passes(msg(alice, "/etcdserverpb.KV/Range", req))
	}
	passes(msg(deployer, "/etcdserverpb.KV/Range", read_everything))
	passes(msg(observer, "/etcdserverpb.KV/Range", read_everything))
}

test_human_read_of_the_past_counts_then if {
	old := {"key": base64.encode("/bulk/0"), "rangeEnd": base64.encode("/bulk/1"), "revision": "7"} # 99 keys now, 179 then
	ztp.deny == {"reading 179 keys at once needs break-glass (more than 100)"} with input as msg(alice, "/etcdserverpb.KV/Range", old) with ztp.query as etcd
	passes(msg(alice, "/etcdserverpb.KV/Range", object.remove(old, ["revision"])))
}

test_human_watch_of_history_needs_breakglass if {
	from_rev := {"createRequest": {"key": "Zm9v", "rangeEnd": "Zm9w", "startRevision": "7"}} # watch --prefix foo --rev 7
	ztp.deny == {"watching the history of a range (--rev) needs break-glass"} with input as msg(alice, "/etcdserverpb.Watch/Watch", from_rev) with ztp.query as etcd
	passes(msg(alice, "/etcdserverpb.Watch/Watch", {"createRequest": {"key": "Zm9v", "startRevision": "7"}})) # one key's history
	passes(msg(deployer, "/etcdserverpb.Watch/Watch", from_rev))
}

test_human_listing_a_crowded_lease_needs_breakglass if {
	crowded := {"99": [base64.encode(k) | some k in bulk_keys]}
	inp := msg(alice, "/etcdserverpb.Lease/LeaseTimeToLive", {"ID": "99", "keys": true})
	ztp.deny == {"listing 120 keys of a lease needs break-glass (more than 100)"} with input as inp with ztp.query as etcd with leases as crowded
	passes(msg(alice, "/etcdserverpb.Lease/LeaseTimeToLive", {"ID": lease_id, "keys": true}))
	passes(msg(alice, "/etcdserverpb.Lease/LeaseTimeToLive", {"ID": "99"})) # without the keys
}

test_human_wide_watch_needs_breakglass if {
	watch_all := msg(alice, "/etcdserverpb.Watch/Watch", {"createRequest": read_everything}) # watch --prefix ""
	ztp.deny == {
		"watching a range of 125 keys needs break-glass (more than 100)",
		"watching a range wider than a 1-byte prefix needs break-glass",
	} with input as watch_all with ztp.query as etcd

	# An empty keyspace does not make watching all of it harmless: it streams every change.
	ztp.deny == {"watching a range wider than a 1-byte prefix needs break-glass"} with input as watch_all with ztp.query as etcd with keyspace as set()

	# watch --prefix / : key "/", range end "0".
	"watching a range wider than a 1-byte prefix needs break-glass" in ztp.deny with input as msg(alice, "/etcdserverpb.Watch/Watch", {"createRequest": {"key": "Lw==", "rangeEnd": "MA=="}}) with ztp.query as etcd
	count(ztp.forbid) == 0 with input as watch_all with ztp.query as etcd
}

test_narrow_watches_pass if {
	every req in [
		{"createRequest": {"key": "Zm9v"}}, # watch foo
		{"createRequest": {"key": "Zm9v", "rangeEnd": "Zm9w"}}, # watch --prefix foo
		{"createRequest": {"key": base64.encode("/bulk/"), "rangeEnd": base64.encode("/bulk0")}}, # 120 keys, but automation
	] {
		passes(msg(deployer, "/etcdserverpb.Watch/Watch", req))
	}
	passes(msg(alice, "/etcdserverpb.Watch/Watch", {"createRequest": {"key": "Zm9v", "rangeEnd": "Zm9w"}}))
	passes(msg(alice, "/etcdserverpb.Watch/Watch", {"cancelRequest": {"watchId": "1"}}))
}

test_undecoded_writes_denied if {
	every c in write_calls {
		inp := undecoded(deployer, c[0])
		not passes(inp)
		"request not decoded: mutating methods need a readable request" in ztp.deny with input as inp with ztp.query as etcd
	}
}

test_undecoded_removals_forbidden if {
	every m in ["/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn", "/etcdserverpb.KV/Put", "/etcdserverpb.Lease/LeaseRevoke"] {
		ztp.forbid == {sprintf("%s with an unreadable request is forbidden", [m])} with input as undecoded(deployer, m) with ztp.query as etcd
	}
}

test_undecoded_alarm_is_not_a_read if {
	inp := undecoded(alice, "/etcdserverpb.Maintenance/Alarm")
	not ztp.allow with input as inp with ztp.query as etcd
	"request not decoded: mutating methods need a readable request" in ztp.deny with input as inp with ztp.query as etcd
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
	not ztp.allow with input as inp with ztp.query as etcd
	"/v3lockpb.Lock/Lock needs break-glass" in ztp.deny with input as inp with ztp.query as etcd
}

test_too_complex_denied_reads_too if {
	every m in ["/etcdserverpb.KV/Range", "/etcdserverpb.Watch/Watch", "/etcdserverpb.KV/Txn"] {
		inp := object.union(undecoded(alice, m), {"request_undecoded_reason": "too_complex"})
		not passes(inp)
		"request too complex to decode (limits.max_decoded_nodes, limits.max_decode_depth)" in ztp.deny with input as inp
	}
}
