// Package deps pins modules that packages under development will import; it is
// removed once they do.
package deps

import (
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/lestrrat-go/jwx/v3/jwk"
	_ "github.com/lestrrat-go/jwx/v3/jwt"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
)
