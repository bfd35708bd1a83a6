# Change budgets for etcd (data.ztp.budgets): how much may change per period, whoever
# asks. etcd.rego decides whether a change is acceptable at all; a budget bounds how many
# acceptable changes may happen in an hour, so that even valid automation (or a person
# under break-glass) cannot remove the whole membership or empty a keyspace piece by
# piece. The proxy draws a budget only for a message that is allowed, and all of a
# message's budgets at once or none.
#
# ztp.yaml's budgets: section gives each key prefix its limit. A key that no prefix
# covers is refused (fail closed), so every key named here needs a prefix there.
package ztp

# Cluster membership: members removed in quick succession can cost etcd its quorum.
# Each MemberRemove draws one unit of member-remove:<upstream>.
budgets contains {"key": concat(":", ["member-remove", input.upstream]), "cost": 1} if {
	input.method == "/etcdserverpb.Cluster/MemberRemove"
}

# Deletes: one unit of delete:<upstream> per key the message removes, as etcd counts them
# before the call (keys_removed in etcd.rego): the keys of every DeleteRange, alone or in a
# Txn; existing keys a Put attaches to a lease (its revocation or expiry removes them); the
# keys attached to a lease that LeaseRevoke ends. So the delete budget bounds the keys
# removed per hour, however the deletes are spelt.
budgets contains {"key": concat(":", ["delete", input.upstream]), "cost": keys_removed} if {
	keys_removed > 0
}

# A range delete with prevKv makes etcd read every key it deletes and return the old
# values in one response: a bulk read of the range as well as a bulk delete, and on a
# large range a memory spike for etcd. Each such delete also draws one unit of
# delete-prevkv:<upstream>.
prevkv_ranges contains del if {
	some del in deletes
	object.get(del, "rangeEnd", "") != ""
	object.get(del, "prevKv", false) == true
}

budgets contains {"key": concat(":", ["delete-prevkv", input.upstream]), "cost": count(prevkv_ranges)} if {
	count(prevkv_ranges) > 0
}
