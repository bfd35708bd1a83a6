package ztp_test

import data.ztp

controller := {"id": "spiffe://demo.ztp/ns/prod/sa/fleet-controller", "kind": "automation", "groups": ["fleet-controllers"], "authn": "mtls"}

alice := {"id": "spiffe://demo.ztp/user/alice", "kind": "human", "groups": ["sre"], "authn": "mtls"}

# Requests as the proxy renders them: every field without presence is there, at its zero
# value when the client left it out.

test_controller_drains if {
	ztp.allow with input as {"principal": controller, "rpc": "DrainMachine", "request": {"name": "web-1"}, "request_decoded": true}
	count(ztp.deny) == 0 with input as {"principal": controller, "rpc": "DrainMachine", "request": {"name": "web-1"}, "request_decoded": true}
}

test_whole_fleet_delete_forbidden if {
	"deleting every machine is never allowed" in ztp.forbid with input as {"principal": controller, "rpc": "DeleteMachines", "request": {"pool": "", "names": []}, "request_decoded": true}
}

test_named_delete_not_forbidden if {
	count(ztp.forbid) == 0 with input as {"principal": controller, "rpc": "DeleteMachines", "request": {"pool": "", "names": ["web-1"]}, "request_decoded": true}
}

test_human_restart_needs_breakglass if {
	"RestartMachine by a human needs break-glass" in ztp.deny with input as {"principal": alice, "rpc": "RestartMachine", "request": {"name": "web-2", "force": false}, "request_decoded": true}
}

test_human_reads if {
	ztp.allow with input as {"principal": alice, "rpc": "ListMachines", "request": {"pool": ""}, "request_decoded": true}
}
