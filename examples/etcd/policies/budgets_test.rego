# Tests for budgets.rego (run with etcd_test.rego; its helpers msg, deployer, alice,
# put_foo, del_foo, del_prefix and the mocked etcd are used here).
package ztp_test

import data.ztp

del_prefix_prevkv := object.union(del_prefix, {"prevKv": true}) # del foo --prefix --prev-kv

test_member_remove_draws_one_unit if {
	ztp.budgets == {{"key": "member-remove:etcd", "cost": 1}} with input as msg(alice, "/etcdserverpb.Cluster/MemberRemove", {"ID": "42"}) with ztp.query as etcd
}

# The cost of a delete is the number of keys etcd holds in its range (see etcd in
# etcd_test.rego: foo, foo/a, foo/b, bar, /e2e/txn and 120 keys under /bulk/).
test_single_key_delete_costs_one if {
	ztp.budgets == {{"key": "delete:etcd", "cost": 1}} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", del_foo) with ztp.query as etcd
}

test_deleting_a_missing_key_costs_nothing if {
	count(ztp.budgets) == 0 with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", {"key": base64.encode("nope")}) with ztp.query as etcd
}

test_single_key_delete_with_prevkv_is_not_a_range if {
	ztp.budgets == {{"key": "delete:etcd", "cost": 1}} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", object.union(del_foo, {"prevKv": true})) with ztp.query as etcd
}

test_range_delete_costs_its_keys if {
	ztp.budgets == {{"key": "delete:etcd", "cost": 3}} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", del_prefix) with ztp.query as etcd

	# The same range spelt differently costs the same: foo .. foo/b inclusive.
	ztp.budgets == {{"key": "delete:etcd", "cost": 3}} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", {"key": "Zm9v", "rangeEnd": base64.encode("foo/c")}) with ztp.query as etcd
}

test_range_delete_with_prevkv_draws_both if {
	ztp.budgets == {
		{"key": "delete:etcd", "cost": 3},
		{"key": "delete-prevkv:etcd", "cost": 1},
	} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", del_prefix_prevkv) with ztp.query as etcd
}

test_txn_deletes_are_summed if {
	txn := {"success": [
		{"requestDeleteRange": del_foo},
		{"requestDeleteRange": del_prefix_prevkv},
		{"requestPut": put_foo},
		{"requestTxn": {"failure": [{"requestDeleteRange": {"key": base64.encode("bar")}}]}},
	]}
	ztp.budgets == {
		{"key": "delete:etcd", "cost": 5},
		{"key": "delete-prevkv:etcd", "cost": 1},
	} with input as msg(deployer, "/etcdserverpb.KV/Txn", txn) with ztp.query as etcd
}

# The lease trick: attach existing keys to a lease, then revoke it (or let it expire).
# Attaching an existing key costs one unit; revoking costs the keys attached.
test_attaching_an_existing_key_to_a_lease_costs_one if {
	leased_foo := object.union(put_foo, {"lease": lease_id})
	ztp.budgets == {{"key": "delete:etcd", "cost": 1}} with input as msg(deployer, "/etcdserverpb.KV/Put", leased_foo) with ztp.query as etcd
	ztp.budgets == {{"key": "delete:etcd", "cost": 1}} with input as msg(deployer, "/etcdserverpb.KV/Put", {"key": "Zm9v", "lease": lease_id, "ignoreValue": true}) with ztp.query as etcd
	ztp.budgets == {{"key": "delete:etcd", "cost": 2}} with input as msg(deployer, "/etcdserverpb.KV/Txn", {"success": [{"requestPut": leased_foo}, {"requestTxn": {"success": [{"requestPut": {"key": base64.encode("bar"), "lease": lease_id}}]}}]}) with ztp.query as etcd
}

test_leasing_a_new_key_costs_nothing if {
	count(ztp.budgets) == 0 with input as msg(deployer, "/etcdserverpb.KV/Put", {"key": base64.encode("new"), "value": "eA==", "lease": lease_id}) with ztp.query as etcd
	count(ztp.budgets) == 0 with input as msg(deployer, "/etcdserverpb.KV/Put", object.union(put_foo, {"lease": "0"})) with ztp.query as etcd
}

test_revoke_costs_the_attached_keys if {
	ztp.budgets == {{"key": "delete:etcd", "cost": 2}} with input as msg(deployer, "/etcdserverpb.Lease/LeaseRevoke", {"ID": lease_id}) with ztp.query as etcd
	count(ztp.budgets) == 0 with input as msg(deployer, "/etcdserverpb.Lease/LeaseRevoke", {"ID": "12345"}) with ztp.query as etcd
}

test_reads_and_puts_draw_nothing if {
	every call in [
		["/etcdserverpb.KV/Range", {"key": "Zm9v", "rangeEnd": "Zm9w"}],
		["/etcdserverpb.KV/Put", put_foo],
		["/etcdserverpb.KV/Put", {"key": base64.encode("new"), "lease": lease_id}],
		["/etcdserverpb.Cluster/MemberList", {}],
	] {
		count(ztp.budgets) == 0 with input as msg(deployer, call[0], call[1]) with ztp.query as etcd
	}
}

test_undecoded_delete_draws_nothing_and_is_forbidden if {
	inp := undecoded(deployer, "/etcdserverpb.KV/DeleteRange")
	count(ztp.budgets) == 0 with input as inp with ztp.query as etcd
	count(ztp.forbid) > 0 with input as inp with ztp.query as etcd
}
