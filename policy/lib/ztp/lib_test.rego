package ztp.lib_test

import data.ztp.lib

alice := {"id": "spiffe://example.org/user/alice", "kind": "human", "groups": ["sre"], "authn": "mtls"}

deployer := {"id": "spiffe://example.org/ns/prod/sa/deployer", "kind": "automation", "groups": ["deployers"], "authn": "mtls"}

# etcd requests as protojson prints them: keys base64.
b64(s) := base64.encode(s)

kv(rpc, req) := {"rpc": rpc, "request": req, "request_decoded": true, "principal": deployer}

test_read_only_rpc_names if {
	every name in ["Get", "GetMachine", "ListMachines", "Range", "WatchEvents", "Status", "Health2", "Check"] {
		lib.read_only_rpc(name)
	}
}

test_mutating_rpc_names if {
	every name in ["Put", "DeleteRange", "Listen", "Getaway", "Statusquo", "MemberRemove", "Txn", "", "get"] {
		lib.mutating_rpc(name)
	}
}

test_mutating_follows_input_rpc if {
	lib.mutating with input as {"rpc": "Put"}
	lib.read_only with input as {"rpc": "Range"}
	not lib.mutating with input as {"rpc": "Range"}
}

test_no_rpc_is_mutating if {
	lib.mutating with input as {}
	not lib.read_only with input as {}
}

test_principal_helpers if {
	lib.is_human with input as {"principal": alice}
	not lib.is_automation with input as {"principal": alice}
	lib.is_automation with input as {"principal": deployer}
	lib.in_group("sre") with input as {"principal": alice}
	not lib.in_group("deployers") with input as {"principal": alice}
	lib.in_any_group(["x", "sre"]) with input as {"principal": alice}
	not lib.in_any_group(["x", "y"]) with input as {"principal": alice}
	lib.principal_matches("spiffe://example.org/user/*") with input as {"principal": alice}
	not lib.principal_matches("spiffe://example.org/*") with input as {"principal": alice}
}

test_justification_and_ticket if {
	lib.has_justification with input as {"justification": "rotate key"}
	not lib.has_justification with input as {"justification": "  "}
	not lib.has_justification with input as {}
	lib.has_ticket with input as {"ticket": "INC-1"}
	not lib.has_ticket with input as {"ticket": ""}
}

test_breakglass_active if {
	lib.breakglass_active with input as {"breakglass": {"active": true, "grant": "bg-1"}}
	not lib.breakglass_active with input as {"breakglass": {"active": false}}
	not lib.breakglass_active with input as {}
}

test_single_key if {
	inp := kv("Put", {"key": b64("/config/a"), "value": b64("1")})
	lib.touches_prefix("/config/") with input as inp
	lib.touches_key("/config/a") with input as inp
	not lib.touches_key("/config/a2") with input as inp
	not lib.touches_key("/config/") with input as inp
	not lib.touches_prefix("/config/a/") with input as inp
	not lib.touches_prefix("/secrets/") with input as inp
	not lib.whole_keyspace with input as inp
}

test_prefix_range if {
	# etcdctl del --prefix /config/ sends key /config/ and rangeEnd /config0.
	inp := kv("DeleteRange", {"key": b64("/config/"), "rangeEnd": b64("/config0")})
	lib.touches_prefix("/config/") with input as inp
	lib.touches_prefix("/config/deep/") with input as inp
	lib.touches_prefix("/") with input as inp
	lib.touches_key("/config/x") with input as inp
	not lib.touches_prefix("/secrets/") with input as inp
	not lib.touches_prefix("/config0") with input as inp
	not lib.touches_key("/config0") with input as inp
	lib.touches_range("/config/m", "/config/n") with input as inp
	not lib.touches_range("/d", "/e") with input as inp
}

test_range_starting_before_prefix if {
	inp := kv("Range", {"key": b64("/a"), "rangeEnd": b64("/s")})
	lib.touches_prefix("/config/") with input as inp
	not lib.touches_prefix("/s") with input as inp
}

test_from_key_is_unbounded if {
	inp := kv("DeleteRange", {"key": b64("/m"), "rangeEnd": "AA=="})
	lib.touches_prefix("/zzz") with input as inp
	lib.touches_prefix("/m") with input as inp
	not lib.touches_prefix("/a") with input as inp
	lib.touches_range("/x", null) with input as inp
	not lib.whole_keyspace with input as inp
}

test_whole_keyspace if {
	lib.whole_keyspace with input as kv("DeleteRange", {"key": "AA==", "rangeEnd": "AA=="})
	lib.touches_prefix("/anything") with input as kv("DeleteRange", {"key": "AA==", "rangeEnd": "AA=="})
}

# etcdctl del "" --prefix sends the empty key, which the proxy renders as "" (zero values
# are present): the range is every key.
test_empty_key_is_the_whole_keyspace if {
	inp := kv("DeleteRange", {"key": "", "rangeEnd": "AA==", "prevKv": false})
	lib.whole_keyspace with input as inp
	lib.touches_prefix("/anything") with input as inp
	lib.touches_key("") with input as inp
}

test_binary_keys_compare_by_byte if {
	# 0xff sorts after every ASCII key.
	inp := kv("Range", {"key": "/w==", "rangeEnd": "AA=="})
	not lib.touches_key("\u00ff") with input as inp
	lib.touches_key(base64.decode("/w==")) with input as inp
	not lib.touches_prefix("/") with input as inp
}

test_txn_operations if {
	inp := kv("Txn", {
		"compare": [{"key": b64("/lock")}],
		"success": [{"requestPut": {"key": b64("/config/a"), "value": b64("1")}}],
		"failure": [{"requestDeleteRange": {"key": b64("/jobs/"), "rangeEnd": b64("/jobs0")}}],
	})
	lib.touches_prefix("/config/") with input as inp
	lib.touches_prefix("/jobs/") with input as inp
	not lib.touches_prefix("/lock") with input as inp
	not lib.txn_nested with input as inp
	lib.txn_nested with input as kv("Txn", {"success": [{"requestTxn": {"success": []}}]})
}

test_undecoded_touches_everything if {
	inp := {"rpc": "DeleteRange", "request": null, "request_decoded": false}
	lib.touches_prefix("/config/") with input as inp
	lib.touches_key("/k") with input as inp
	lib.touches_range("/a", "/b") with input as inp
}

test_no_key_touches_nothing if {
	inp := kv("MemberList", {})
	not lib.touches_prefix("/") with input as inp
	count(lib.key_ranges) == 0 with input as inp
}
