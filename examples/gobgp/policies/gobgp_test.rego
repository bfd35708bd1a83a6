package ztp_test

import data.ztp

injector := {"id": "spiffe://example.org/ns/prod/sa/injector", "kind": "automation", "groups": ["route-injectors"], "authn": "mtls"}

other_bot := {"id": "spiffe://example.org/ns/prod/sa/monitor", "kind": "automation", "groups": ["monitoring"], "authn": "mtls"}

alice := {"id": "spiffe://example.org/user/alice", "kind": "human", "groups": ["sre"], "authn": "mtls"}

config := {"budgets": {"withdraw:": {"limit": 5, "per": "1h0m0s", "per_seconds": 3600}}}

# A Path as the proxy renders what `gobgp global rib add PREFIX/LEN -a ipv4|ipv6` sends:
# every field without presence at its default, nlri and pattrs as canonical Anys.
path(afi, prefix, len) := {
	"nlri": {"@type": "type.googleapis.com/apipb.IPAddressPrefix", "prefix": prefix, "prefixLen": len},
	"pattrs": [
		{"@type": "type.googleapis.com/apipb.OriginAttribute", "origin": 0},
		{"@type": "type.googleapis.com/apipb.NextHopAttribute", "nextHop": "0.0.0.0"},
	],
	"family": {"afi": afi, "safi": "SAFI_UNICAST"},
	"isWithdraw": false, "nlriBinary": "", "pattrsBinary": [], "uuid": "", "best": false,
	"noImplicitWithdraw": false, "sourceAsn": 0, "sourceId": "", "filtered": false,
	"stale": false, "isFromExternal": false, "neighborIp": "", "isNexthopInvalid": false,
	"identifier": 0, "localIdentifier": 0,
}

v4(prefix, len) := path("AFI_IP", prefix, len)

v6(prefix, len) := path("AFI_IP6", prefix, len)

add(p) := {"tableType": "GLOBAL", "vrfId": "", "path": p}

del(p) := {"tableType": "GLOBAL", "vrfId": "", "path": p, "uuid": ""}

req(principal, rpc, request) := {
	"principal": principal,
	"method": concat("", ["/apipb.GobgpApi/", rpc]),
	"service": "apipb.GobgpApi",
	"rpc": rpc,
	"upstream": "gobgp",
	"request": request,
	"request_decoded": true,
	"request_unknown_fields": [],
	"breakglass": {"active": false},
}

undecoded(principal, rpc) := object.union(req(principal, rpc, null), {"request_decoded": false})

# Reads

test_everyone_reads if {
	ztp.allow with input as req(alice, "ListPath", {"tableType": "GLOBAL", "name": "", "family": {"afi": "AFI_IP", "safi": "SAFI_UNICAST"}, "prefixes": []})
	ztp.allow with input as req(other_bot, "GetBgp", {})
	ztp.allow with input as req(alice, "ListPeer", {"address": "", "enableAdvertised": false})
	count(ztp.deny) == 0 with input as req(alice, "ListDefinedSet", {"definedType": "PREFIX", "name": ""})
}

test_undecoded_read_is_allowed if {
	ztp.allow with input as undecoded(alice, "GetTable")
	count(ztp.deny) == 0 with input as undecoded(alice, "GetTable")
}

# Route injection

test_injector_adds_prefix_in_allow_list if {
	ztp.allow with input as req(injector, "AddPath", add(v4("10.100.1.0", 24)))
	count(ztp.deny) == 0 with input as req(injector, "AddPath", add(v4("10.100.1.0", 24)))
	count(ztp.forbid) == 0 with input as req(injector, "AddPath", add(v4("10.100.1.0", 24)))
	count(ztp.deny) == 0 with input as req(injector, "AddPath", add(v6("2001:db8:100:7::", 64)))
	count(ztp.deny) == 0 with input as req(injector, "AddPath", add(v4("10.100.0.0", 16)))
}

test_prefix_outside_allow_list_is_denied if {
	ztp.deny == {`route 10.200.0.0/24 is outside the allow-list {"10.100.0.0/16", "2001:db8:100::/48"}`} with input as req(injector, "AddPath", add(v4("10.200.0.0", 24)))

	# A less specific prefix covering the allowed range is outside it too.
	count(ztp.deny) == 1 with input as req(injector, "AddPath", add(v4("10.0.0.0", 8)))
	count(ztp.deny) == 1 with input as req(injector, "AddPath", add(v6("2001:db8::", 32)))
	count(ztp.deny) == 1 with input as req(injector, "DeletePath", del(v4("192.0.2.0", 24)))
}

# gobgpd reads "::ffff:10.100.1.0" in AFI_IP as 10.100.1.0, and "10.100.1.0" in AFI_IP6 as
# ::ffff:10.100.1.0: neither is in the family's own notation, so neither matches.
test_prefix_in_the_other_family_notation_is_denied if {
	count(ztp.deny) == 1 with input as req(injector, "AddPath", add(v4("::ffff:10.100.1.0", 120)))
	count(ztp.deny) == 1 with input as req(injector, "AddPath", add(v6("10.100.1.0", 24)))
	count(ztp.deny) == 1 with input as req(injector, "AddPath", add(v4("not-an-address", 24)))
}

test_non_unicast_family_is_denied if {
	p := object.union(v4("10.100.1.0", 24), {"family": {"afi": "AFI_IP", "safi": "SAFI_MPLS_VPN"}})
	ztp.deny == {"route 10.100.1.0/24 is not an IPv4/IPv6 unicast prefix"} with input as req(injector, "AddPath", add(p))
	flow := object.union(v4("10.100.1.0", 24), {"nlri": {"@type": "type.googleapis.com/apipb.FlowSpecNLRI", "rules": []}})
	count(ztp.deny) == 1 with input as req(injector, "AddPath", add(flow))
}

test_path_without_family_or_nlri_is_denied if {
	p := object.remove(v4("10.100.1.0", 24), ["family", "nlri"])
	ztp.deny == {"route ?/0 is not an IPv4/IPv6 unicast prefix"} with input as req(injector, "AddPath", add(p))
}

test_vrf_table_is_denied if {
	r := object.union(add(v4("10.100.1.0", 24)), {"tableType": "VRF", "vrfId": "red"})
	ztp.deny == {"routes go to the global table only (tableType GLOBAL, no vrfId)"} with input as req(injector, "AddPath", r)
}

test_other_automation_and_humans_are_denied_routes if {
	ztp.deny == {"route changes need automation in group route-injectors"} with input as req(other_bot, "AddPath", add(v4("10.100.1.0", 24)))
	ztp.deny == {"human changes need break-glass"} with input as req(alice, "AddPath", add(v4("10.100.1.0", 24)))
	not ztp.allow with input as req(alice, "AddPath", add(v4("10.100.1.0", 24)))
}

# Default routes: the naive `prefixLen == 0` fires because the proxy renders the zero value.

test_default_route_is_forbidden_in_both_families if {
	ztp.forbid == {"announcing a default route (prefix length 0) is forbidden"} with input as req(injector, "AddPath", add(v4("0.0.0.0", 0)))
	ztp.forbid == {"announcing a default route (prefix length 0) is forbidden"} with input as req(alice, "AddPath", add(v6("::", 0)))

	# Any prefix with length 0 is the default route.
	ztp.forbid == {"announcing a default route (prefix length 0) is forbidden"} with input as req(injector, "AddPath", add(v4("10.100.0.0", 0)))
	labeled := object.union(v4("0.0.0.0", 0), {"nlri": {"@type": "type.googleapis.com/apipb.LabeledIPAddressPrefix", "prefix": "0.0.0.0", "prefixLen": 0, "labels": []}})
	count(ztp.forbid) == 1 with input as req(alice, "AddPath", add(labeled))
}

test_default_route_in_a_stream_is_forbidden if {
	r := {"tableType": "GLOBAL", "vrfId": "", "paths": [v4("10.100.1.0", 24), v6("::", 0)]}
	ztp.forbid == {"announcing a default route (prefix length 0) is forbidden"} with input as req(alice, "AddPathStream", r)
}

test_withdrawing_a_default_route_is_not_forbidden if {
	count(ztp.forbid) == 0 with input as req(alice, "DeletePath", del(v4("0.0.0.0", 0)))
	w := object.union(v4("0.0.0.0", 0), {"isWithdraw": true})
	count(ztp.forbid) == 0 with input as req(alice, "AddPath", add(w))
}

test_truncated_prefix_length_is_forbidden if {
	# 256 reaches gobgpd as uint8 0: a default route.
	ztp.forbid == {"prefix length above 128 is forbidden (gobgpd truncates it to 8 bits)"} with input as req(injector, "AddPath", add(v4("10.100.1.0", 256)))
	ztp.forbid == {"prefix length above 128 is forbidden (gobgpd truncates it to 8 bits)"} with input as req(injector, "AddPath", add(v4("10.100.1.0", 280)))
}

test_binary_nlri_is_forbidden if {
	p := object.union(v4("10.100.1.0", 24), {"nlriBinary": "AA=="})
	ztp.forbid == {"binary NLRI (nlriBinary) is forbidden: the policy cannot read it"} with input as req(injector, "AddPath", add(p))
	ztp.forbid == {"binary NLRI (nlriBinary) is forbidden: the policy cannot read it"} with input as req(injector, "DeletePath", del(p))
}

test_binary_attributes_need_breakglass if {
	p := object.union(v4("10.100.1.0", 24), {"pattrsBinary": ["QAEBAA=="]})
	ztp.deny == {"binary path attributes (pattrsBinary) need break-glass: the policy cannot read them"} with input as req(injector, "AddPath", add(p))
}

# Withdrawals and their budget

test_withdrawal_draws_one_unit if {
	ztp.allow with input as req(injector, "DeletePath", del(v4("10.100.1.0", 24)))
	count(ztp.deny) == 0 with input as req(injector, "DeletePath", del(v4("10.100.1.0", 24)))
	ztp.budgets == {{"key": "withdraw:gobgp", "cost": 1}} with input as req(injector, "DeletePath", del(v4("10.100.1.0", 24))) with data.ztp_config as config
}

test_addpath_with_is_withdraw_is_a_withdrawal if {
	w := object.union(v4("10.100.1.0", 24), {"isWithdraw": true})
	count(ztp.deny) == 0 with input as req(injector, "AddPath", add(w))
	ztp.budgets == {{"key": "withdraw:gobgp", "cost": 1}} with input as req(injector, "AddPath", add(w))
}

test_announcements_draw_nothing if {
	count(ztp.budgets) == 0 with input as req(injector, "AddPath", add(v4("10.100.1.0", 24)))
}

test_stream_withdrawals_add_up if {
	w := object.union(v4("10.100.1.0", 24), {"isWithdraw": true})
	r := {"tableType": "GLOBAL", "vrfId": "", "paths": [w, w, v4("10.100.2.0", 24)]}
	ztp.budgets == {{"key": "withdraw:gobgp", "cost": 2}} with input as req(alice, "AddPathStream", r)
	ztp.deny == {"human changes need break-glass", "/apipb.GobgpApi/AddPathStream needs break-glass"} with input as req(alice, "AddPathStream", r)
}

test_delete_all_costs_the_whole_budget if {
	r := {"tableType": "GLOBAL", "vrfId": "", "family": {"afi": "AFI_IP", "safi": "SAFI_UNICAST"}, "uuid": ""}
	ztp.deny == {"withdrawing every route (DeletePath without a path) needs break-glass"} with input as req(injector, "DeletePath", r)
	ztp.budgets == {{"key": "withdraw:gobgp", "cost": 5}} with input as req(injector, "DeletePath", r) with data.ztp_config as config

	# Without the limit from ztp.yaml it costs more than any budget: refused.
	ztp.budgets == {{"key": "withdraw:gobgp", "cost": 1000000000}} with input as req(injector, "DeletePath", r) with data.ztp_config as {}
}

test_delete_by_uuid_needs_breakglass if {
	r := object.union(del(v4("10.100.1.0", 24)), {"uuid": "AAECAwQFBgcICQoLDA0ODw=="})
	ztp.deny == {"DeletePath by uuid needs break-glass: the policy cannot see which route it withdraws"} with input as req(injector, "DeletePath", r)
	ztp.budgets == {{"key": "withdraw:gobgp", "cost": 1}} with input as req(injector, "DeletePath", r)
}

# Everything else

test_neighbor_and_global_changes_need_breakglass if {
	some rpc in {"AddPeer", "DeletePeer", "UpdatePeer", "ResetPeer", "ShutdownPeer", "EnablePeer", "DisablePeer", "StartBgp", "AddDefinedSet", "SetPolicies", "AddVrf", "EnableMrt", "SetLogLevel", "SomethingNew"}
	reason := sprintf("/apipb.GobgpApi/%s needs break-glass", [rpc])
	ztp.deny == {reason} with input as req(injector, rpc, {})
	ztp.deny == {reason, "human changes need break-glass"} with input as req(alice, rpc, {})
	count(ztp.forbid) == 0 with input as req(alice, rpc, {})
}

test_every_change_needs_breakglass if {
	every rpc in {"AddPeer", "DeletePeer", "UpdatePeer", "ResetPeer", "ShutdownPeer", "EnablePeer", "DisablePeer", "StartBgp", "AddPolicy", "DeleteDefinedSet", "AddPolicyAssignment", "AddRpki", "AddBmp", "AddPathStream", "SomethingNew"} {
		not ztp.allow with input as req(alice, rpc, {})
		count(ztp.deny) > 0 with input as req(injector, rpc, {})
	}
}

test_stop_bgp_is_forbidden if {
	ztp.forbid == {"StopBgp is forbidden"} with input as req(alice, "StopBgp", {})
	ztp.forbid == {"StopBgp is forbidden"} with input as req(injector, "StopBgp", {})
}

test_undecodable_route_change_is_forbidden if {
	ztp.forbid == {"route change with an unreadable request is forbidden"} with input as undecoded(injector, "AddPath")
	ztp.deny == {"request not decoded: changes need a readable request"} with input as undecoded(injector, "AddPath")
	ztp.forbid == {"route change with an unreadable request is forbidden"} with input as undecoded(alice, "DeletePath")
	count(ztp.forbid) == 0 with input as undecoded(alice, "AddPeer")
	"request not decoded: changes need a readable request" in ztp.deny with input as undecoded(alice, "AddPeer")
}

test_unknown_fields_refuse_changes if {
	i := object.union(req(injector, "AddPath", add(v4("10.100.1.0", 24))), {"request_unknown_fields": ["path.99"]})
	ztp.deny == {"request has fields gobgp.protoset does not describe (path.99): update the protoset"} with input as i
	ztp.forbid == {"route change with fields gobgp.protoset does not describe is forbidden"} with input as i
	j := object.union(req(alice, "AddPeer", {}), {"request_unknown_fields": ["42"]})
	count(ztp.forbid) == 0 with input as j
	"request has fields gobgp.protoset does not describe (42): update the protoset" in ztp.deny with input as j
	k := object.union(req(alice, "ListPeer", {}), {"request_unknown_fields": ["42"]})
	ztp.allow with input as k
	count(ztp.deny) == 0 with input as k
}
