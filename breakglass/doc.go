// Package breakglass gives engineers time-boxed, approved, audited emergency
// access: the third way to change production under Zero Touch Prod, next to
// automation and prevalidated changes.
//
// A human requests a grant with a reason (and optionally a ticket, a
// duration up to breakglass.max_duration and a scope of method globs). Once
// enough other humans of the approver groups approved it, the grant is
// active: while it lasts, the proxy forwards the requester's calls inside the
// scope that policy "deny" rules would refuse ("forbid" still holds), and
// records the grant id and reason with each. A grant moves through
//
//	pending ──approve×N──▶ active ──▶ expired | revoked
//	   └──▶ denied | revoked | expired (not approved within max_duration)
//
// and every change of state is an audit record of type "breakglass" naming
// the actor and the grant, written before the change takes effect (no
// durable record, no change).
//
// Guarantees:
//
//   - Only humans request; the reason is mandatory; a duration above the
//     maximum is refused, never capped. Approvers and deniers are humans of
//     the approver groups other than the requester, each counted once.
//     Expired, revoked and denied grants cannot be approved. The requester
//     or any approver may revoke.
//   - One person, under any of their ids, has at most Options.MaxPending
//     requests waiting for approval (breakglass.max_pending_per_person); the
//     next is refused with [ErrTooManyPending] naming them, and costs neither
//     an audit record nor a notification.
//   - Expiry is exact: [Store.Active] compares the caller's clock with the
//     expiry on every message, so a grant stops working at its expiry
//     instant whether or not the sweeper has recorded the "expired" state.
//   - Grants persist in their own bucket of the audit log's bbolt file and
//     survive a restart; [Store.Active] reads an immutable in-memory index
//     and does not allocate, so the per-message cost is a map lookup.
//   - Notifications (the webhook) run in the background with a bounded
//     queue and never delay a request; a notification that cannot be
//     delivered is itself an audit record.
//
// The clock is injected, so tests advance time instead of sleeping.
package breakglass
