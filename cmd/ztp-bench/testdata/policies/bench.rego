# Safety policy the full pipeline of ztp-bench evaluates for every call: the shape
# of examples/demo/policies/fleet.rego, written for grpc.testing.TestService.
#
# Automation in group deployers may change things; humans may read, and their
# changes need break-glass; a payload of "forbidden" is never allowed. The
# benchmark calls UnaryCall as a deployer, so every message walks the mutation
# path: allowed, with every deny and forbid rule evaluated and empty.
package ztp

default allow := false

reads := {"EmptyCall", "StreamingOutputCall"}

mutations := {"UnaryCall", "StreamingInputCall", "FullDuplexCall"}

allow if input.rpc in reads

allow if {
	input.rpc in mutations
	input.principal.kind == "automation"
	"deployers" in input.principal.groups
}

deny contains sprintf("%s by a human needs break-glass", [input.rpc]) if {
	input.rpc in mutations
	input.principal.kind == "human"
}

deny contains "request could not be decoded" if {
	input.rpc in mutations
	not input.request_decoded
}

deny contains "responses larger than 1 MiB are not served through ztp" if {
	input.rpc == "UnaryCall"
	input.request.responseSize > 1048576
}

forbid contains "payload 'forbidden' is never allowed" if {
	base64.decode(input.request.payload.body) == "forbidden"
}
