package breakglass

import "errors"

var (
	// ErrInvalidRequest is returned when a request or action is malformed:
	// no reason, a duration that is not positive, not whole seconds or above
	// breakglass.max_duration, an invalid scope glob, an overlong field, or
	// an unknown state filter.
	ErrInvalidRequest = errors.New("breakglass: invalid request")

	// ErrNotFound is returned when no grant has the given id.
	ErrNotFound = errors.New("breakglass: no such grant")

	// ErrNotAllowed is returned when the caller may not take the action:
	// automation requesting, approving or denying; a human outside the
	// approver groups approving or denying; revoking someone else's grant
	// without being an approver.
	ErrNotAllowed = errors.New("breakglass: not allowed")

	// ErrSelfApproval is returned when the requester tries to approve (or
	// deny) their own grant.
	ErrSelfApproval = errors.New("breakglass: self-approval refused")

	// ErrAlreadyApproved is returned when an approver approves the same grant
	// a second time; approvals must come from distinct people.
	ErrAlreadyApproved = errors.New("breakglass: already approved by this approver")

	// ErrWrongState is returned when the grant's state does not allow the
	// action: approving or denying a grant that is not pending, revoking one
	// that already ended.
	ErrWrongState = errors.New("breakglass: wrong grant state")

	// ErrTooManyPending is returned when the requester's person already has
	// Options.MaxPending requests waiting for approval; the message names them.
	ErrTooManyPending = errors.New("breakglass: too many pending requests")

	// ErrUnavailable is returned when a state change could not be audited or
	// persisted; the change did not take effect.
	ErrUnavailable = errors.New("breakglass: state change not recorded")

	// ErrInvalidOptions is returned by Open and NewWebhook when their options
	// are unusable.
	ErrInvalidOptions = errors.New("breakglass: invalid options")

	// ErrCorrupt is returned by Open when a stored grant cannot be decoded.
	ErrCorrupt = errors.New("breakglass: stored grant is corrupt")
)
