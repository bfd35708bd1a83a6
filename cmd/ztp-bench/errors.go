package main

import "errors"

// errCallsFailed is returned by run when calls failed during the measurement:
// the figures are printed, but they are not a measurement of the path.
var errCallsFailed = errors.New("calls failed; the figures are not a measurement")
