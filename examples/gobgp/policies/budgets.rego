# Change budgets for GoBGP (data.ztp.budgets): how many routes may be withdrawn per
# period, whoever asks. gobgp.rego decides whether a withdrawal is acceptable at all; the
# budget bounds how many acceptable withdrawals may happen in an hour, so that valid
# automation (or a person under break-glass) cannot empty the table route by route.
# The proxy draws a budget only for a message that is allowed.
#
# ztp.yaml's budgets: section gives the "withdraw:" prefix its limit; a key no prefix
# covers is refused (fail closed).
package ztp

budget_prefix := "withdraw:"

# The withdraw budget's limit from ztp.yaml (data.ztp_config). Without it, withdrawing
# everything costs more than any budget holds, and is refused.
default whole_budget := 1000000000

whole_budget := data.ztp_config.budgets[budget_prefix].limit

# One unit per route withdrawn (DeletePath, or a path marked isWithdraw); one for a
# DeletePath by uuid (one route); the whole budget for a DeletePath that withdraws
# everything, so it passes only when no withdrawal happened within the period.
withdraw_cost := whole_budget if {
	delete_all
} else := 1 if {
	delete_by_uuid
} else := count(withdrawn)

budgets contains {"key": concat("", [budget_prefix, input.upstream]), "cost": withdraw_cost} if {
	withdraw_cost > 0
}
