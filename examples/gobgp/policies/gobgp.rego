# ztp policy for GoBGP's gRPC API (gobgpd 3.10, descriptors from ../gobgp.protoset).
#
# Zero Touch Prod for a BGP speaker: every authenticated principal may read; automation
# in group "route-injectors" may announce and withdraw IPv4/IPv6 unicast prefixes inside
# route_allow_list, and nothing else; every other change (neighbors, global settings,
# routing policy, VRFs, RPKI, BMP, MRT, ...) needs break-glass (deny, which a grant
# overrides); announcing a default route and stopping BGP are forbidden outright (forbid,
# which nothing overrides). Anything this file does not name is treated as a change, so a
# method a newer gobgpd adds is refused until someone reviews it and lists it here.
#
# Requests arrive as protojson with every field without presence at its default
# ("", 0, false, "GLOBAL", [] ...): `gobgp global rib add 0.0.0.0/0` has "prefixLen": 0.
# Message fields (path, family, nlri) are present only when the client set them, so they
# are read with object.get. google.protobuf.Any type URLs are canonical
# ("type.googleapis.com/apipb.IPAddressPrefix" whatever the client wrote), so comparing
# "@type" is what gobgpd will decode.
package ztp

default allow := false

api := "/apipb.GobgpApi/"

# Methods that change nothing. WatchEvent and the List* methods are server streams: one
# request message, however many responses.
reads := {concat("", [api, m]) | some m in {
	"GetBgp", "WatchEvent", "ListPeer", "ListPeerGroup", "ListDynamicNeighbor",
	"ListPath", "GetTable", "ListVrf", "ListPolicy", "ListDefinedSet", "ListStatement",
	"ListPolicyAssignment", "ListRpki", "ListRpkiTable", "ListBmp",
}}

add_path := concat("", [api, "AddPath"])

delete_path := concat("", [api, "DeletePath"])

add_path_stream := concat("", [api, "AddPathStream"])

# What route injectors may call (each message is then checked route by route below).
route_methods := {add_path, delete_path}

# Methods whose requests carry routes: their paths are checked whoever calls them.
path_methods := {add_path, delete_path, add_path_stream}

injector_groups := {"route-injectors"}

# The prefixes automation may announce and withdraw: a route is allowed when its prefix
# lies inside one of these (equal or more specific). Edit to your address plan.
route_allow_list := {
	"10.100.0.0/16",
	"2001:db8:100::/48",
}

# The families automation may touch, and the nlri type each must carry.
unicast := {"AFI_IP": "SAFI_UNICAST", "AFI_IP6": "SAFI_UNICAST"}

ip_prefix_type := "type.googleapis.com/apipb.IPAddressPrefix"

read if input.method in reads

mutating if not read

injector if {
	input.principal.kind == "automation"
	some group in input.principal.groups
	group in injector_groups
}

allow if read

allow if {
	injector
	input.method in route_methods
}

deny contains "human changes need break-glass" if {
	mutating
	input.principal.kind == "human"
}

deny contains sprintf("%s needs break-glass", [input.method]) if {
	mutating
	not input.method in route_methods
}

deny contains "route changes need automation in group route-injectors" if {
	input.method in route_methods
	input.principal.kind == "automation"
	not injector
}

# The policy cannot see into a request it could not decode, so it cannot admit a change
# it cannot read (for example after a gobgpd upgrade the protoset does not describe yet).
deny contains "request not decoded: changes need a readable request" if {
	mutating
	not input.request_decoded
}

# A field the descriptor set does not describe is left out of input.request but still
# reaches gobgpd, so a change carrying one cannot be judged.
deny contains sprintf("request has fields gobgp.protoset does not describe (%s): update the protoset", [concat(", ", unknown)]) if {
	mutating
	unknown := object.get(input, "request_unknown_fields", [])
	count(unknown) > 0
}

# A route change nobody can read could be a default route: refused even under break-glass.
forbid contains "route change with an unreadable request is forbidden" if {
	input.method in path_methods
	not input.request_decoded
}

forbid contains "route change with fields gobgp.protoset does not describe is forbidden" if {
	input.method in path_methods
	count(object.get(input, "request_unknown_fields", [])) > 0
}

# ---- Routes ---------------------------------------------------------------------------

# Every path a message carries, in order: AddPath's and DeletePath's path, each of
# AddPathStream's. A list, not a set: two identical withdrawals cost two units.
paths := [path] if {
	input.method in {add_path, delete_path}
	input.request_decoded
	path := object.get(input.request, "path", null)
	is_object(path)
} else := [path | some path in object.get(input.request, "paths", []); is_object(path)] if {
	input.method == add_path_stream
	input.request_decoded
} else := []

# A path is withdrawn by DeletePath, and also by AddPath or AddPathStream when it says
# isWithdraw: gobgpd honours that flag on every path it is given.
withdrawal(_) if input.method == delete_path

withdrawal(path) if path.isWithdraw == true

withdrawn := [path | some path in paths; withdrawal(path)]

announced := [path | some path in paths; not withdrawal(path)]

nlri(path) := object.get(path, "nlri", {})

prefix_len(path) := object.get(nlri(path), "prefixLen", 0)

# The nlri types whose prefixLen is a route's prefix length (IPv4/IPv6 unicast, labeled
# unicast, L3VPN).
ip_nlri_types := {
	ip_prefix_type,
	"type.googleapis.com/apipb.LabeledIPAddressPrefix",
	"type.googleapis.com/apipb.LabeledVPNIPAddressPrefix",
}

# No default route, in any family, by anyone. A plain `== 0` is enough because the proxy
# renders the zero value that `gobgp global rib add 0.0.0.0/0` leaves out.
forbid contains "announcing a default route (prefix length 0) is forbidden" if {
	some path in announced
	object.get(nlri(path), "@type", "") in ip_nlri_types
	nlri(path).prefixLen == 0
}

# gobgpd keeps only the low 8 bits of prefixLen (uint32 in the API, uint8 in BGP): 256 is
# a default route that `== 0` would miss. No real prefix is longer than 128 bits.
forbid contains "prefix length above 128 is forbidden (gobgpd truncates it to 8 bits)" if {
	some path in paths
	object.get(nlri(path), "@type", "") in ip_nlri_types
	prefix_len(path) > 128
}

# gobgpd decodes nlriBinary instead of nlri when it is set: a prefix the policy cannot
# read, so no rule above could see a default route in it.
forbid contains "binary NLRI (nlriBinary) is forbidden: the policy cannot read it" if {
	some path in paths
	object.get(path, "nlriBinary", "") != ""
}

deny contains "binary path attributes (pattrsBinary) need break-glass: the policy cannot read them" if {
	some path in paths
	count(object.get(path, "pattrsBinary", [])) > 0
}

# What a route injector may do with each path: the global table, an IPv4 or IPv6 unicast
# family, an IPAddressPrefix nlri whose prefix lies inside route_allow_list.
deny contains "routes go to the global table only (tableType GLOBAL, no vrfId)" if {
	input.method in path_methods
	input.request_decoded
	not global_table
}

global_table if {
	object.get(input.request, "tableType", "GLOBAL") == "GLOBAL"
	object.get(input.request, "vrfId", "") == ""
}

deny contains sprintf("route %s is not an IPv4/IPv6 unicast prefix", [route_name(path)]) if {
	some path in paths
	not unicast_prefix(path)
}

unicast_prefix(path) if {
	family := object.get(path, "family", {})
	unicast[object.get(family, "afi", "")] == object.get(family, "safi", "")
	object.get(nlri(path), "@type", "") == ip_prefix_type
}

deny contains sprintf("route %s is outside the allow-list %v", [route_name(path), route_allow_list]) if {
	some path in paths
	unicast_prefix(path)
	not allowed_prefix(path)
}

# The prefix must be written in its family's notation: gobgpd reads an IPv4-mapped IPv6
# address ("::ffff:10.1.0.0") in AFI_IP as the IPv4 address it maps.
family_notation(path) if {
	path.family.afi == "AFI_IP"
	not contains(nlri(path).prefix, ":")
}

family_notation(path) if {
	path.family.afi == "AFI_IP6"
	contains(nlri(path).prefix, ":")
}

allowed_prefix(path) if {
	family_notation(path)
	cidr := sprintf("%s/%d", [nlri(path).prefix, prefix_len(path)])
	net.cidr_is_valid(cidr)
	some allowed in route_allow_list
	net.cidr_contains(allowed, cidr)
}

route_name(path) := sprintf("%v/%v", [object.get(nlri(path), "prefix", "?"), prefix_len(path)])

# DeletePath with a uuid deletes the route AddPath returned that uuid for, whatever its
# path says: the policy cannot see which route that is.
deny contains "DeletePath by uuid needs break-glass: the policy cannot see which route it withdraws" if {
	delete_by_uuid
}

delete_by_uuid if {
	input.method == delete_path
	input.request_decoded
	object.get(input.request, "uuid", "") != ""
}

# DeletePath without a path and uuid withdraws every route gobgpd originated, in the
# family given or in all (`gobgp global rib del all`).
delete_all if {
	input.method == delete_path
	input.request_decoded
	not is_object(object.get(input.request, "path", null))
	not delete_by_uuid
}

deny contains "withdrawing every route (DeletePath without a path) needs break-glass" if delete_all

# ---- Global state ---------------------------------------------------------------------

# Stopping BGP drops every session and withdraws every route: nobody does that through
# the proxy, break-glass or not. (StartBgp opens BGP listeners: break-glass, above.)
forbid contains "StopBgp is forbidden" if input.method == concat("", [api, "StopBgp"])
