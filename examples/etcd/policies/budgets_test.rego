# Tests for budgets.rego (run with etcd_test.rego; its helpers msg, deployer, alice,
# put_foo, del_foo and del_prefix are used here).
package ztp_test

import data.ztp

del_prefix_prevkv := object.union(del_prefix, {"prevKv": true}) # del foo --prefix --prev-kv

test_member_remove_draws_one_unit if {
	ztp.budgets == {{"key": "member-remove:etcd", "cost": 1}} with input as msg(alice, "/etcdserverpb.Cluster/MemberRemove", {"ID": "42"})
}

test_single_key_delete_costs_one if {
	ztp.budgets == {{"key": "delete:etcd", "cost": 1}} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", del_foo)
}

test_single_key_delete_with_prevkv_is_not_a_range if {
	ztp.budgets == {{"key": "delete:etcd", "cost": 1}} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", object.union(del_foo, {"prevKv": true}))
}

test_range_delete_costs_ten if {
	ztp.budgets == {{"key": "delete:etcd", "cost": 10}} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", del_prefix)
}

test_range_delete_with_prevkv_draws_both if {
	ztp.budgets == {
		{"key": "delete:etcd", "cost": 10},
		{"key": "delete-prevkv:etcd", "cost": 1},
	} with input as msg(deployer, "/etcdserverpb.KV/DeleteRange", del_prefix_prevkv)
}

test_txn_deletes_are_summed if {
	txn := {"success": [
		{"requestDeleteRange": del_foo},
		{"requestDeleteRange": del_prefix_prevkv},
		{"requestPut": put_foo},
	]}
	ztp.budgets == {
		{"key": "delete:etcd", "cost": 11},
		{"key": "delete-prevkv:etcd", "cost": 1},
	} with input as msg(deployer, "/etcdserverpb.KV/Txn", txn)
}

test_reads_and_puts_draw_nothing if {
	every call in [
		["/etcdserverpb.KV/Range", {"key": "Zm9v", "rangeEnd": "Zm9w"}],
		["/etcdserverpb.KV/Put", put_foo],
		["/etcdserverpb.Cluster/MemberList", {}],
	] {
		count(ztp.budgets) == 0 with input as msg(deployer, call[0], call[1])
	}
}

test_undecoded_delete_draws_nothing_and_is_forbidden if {
	inp := undecoded(deployer, "/etcdserverpb.KV/DeleteRange")
	count(ztp.budgets) == 0 with input as inp
	count(ztp.forbid) > 0 with input as inp
}
