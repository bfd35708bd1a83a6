// Command printversion prints version.Get(), for the stamping test.
package main

import (
	"fmt"

	"github.com/ztp-dev/ztp/internal/version"
)

func main() { fmt.Println(version.Get()) }
