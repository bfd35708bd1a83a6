# Safety policy for the demo fleet manager (package fleet.v1).
#
# Automation in group fleet-controllers may change machines; humans may look but
# their changes need break-glass; nobody deletes the whole fleet.
package ztp

default allow := false

reads := {"ListMachines", "WatchMachines"}

mutations := {"DrainMachine", "RestartMachine", "DeleteMachines"}

allow if input.rpc in reads

allow if {
	input.rpc in mutations
	input.principal.kind == "automation"
	"fleet-controllers" in input.principal.groups
}

deny contains sprintf("%s by a human needs break-glass", [input.rpc]) if {
	input.rpc in mutations
	input.principal.kind == "human"
}

deny contains "request could not be decoded" if {
	input.rpc in mutations
	not input.request_decoded
}

forbid contains "deleting every machine is never allowed" if {
	input.rpc == "DeleteMachines"
	count(object.get(input.request, "names", [])) == 0
}
