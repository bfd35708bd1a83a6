package identity

import "context"

type principalKey struct{}

// NewContext returns ctx carrying p, the authenticated caller. The proxy sets it
// for control-API handlers (break-glass, audit export), which authorize on it.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFromContext returns the authenticated caller set by NewContext.
// ok is false when the call was never authenticated: handlers must refuse it.
func PrincipalFromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// InGroup reports whether p is a member of any of groups.
func (p Principal) InGroup(groups ...string) bool {
	for _, g := range groups {
		for _, have := range p.Groups {
			if g == have {
				return true
			}
		}
	}
	return false
}
