package proxy

import (
	"path"
	"strings"
)

// route maps a service glob to an upstream.
type route struct {
	glob     string
	upstream *upstream
}

// router picks the upstream of a full method name ("/pkg.Service/Method") by
// matching its service against each upstream's globs in config order.
type router struct {
	routes []route
}

func (r *router) lookup(fullMethod string) *upstream {
	service, _, ok := splitMethod(fullMethod)
	if !ok {
		return nil
	}
	for _, rt := range r.routes {
		if ok, _ := path.Match(rt.glob, service); ok {
			return rt.upstream
		}
	}
	return nil
}

// splitMethod splits "/pkg.Service/Method" into service and method.
func splitMethod(fullMethod string) (service, method string, ok bool) {
	s, ok := strings.CutPrefix(fullMethod, "/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndexByte(s, '/')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}
