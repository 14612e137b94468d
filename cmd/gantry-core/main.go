// Command gantry is Gantry's one binary: servers (serve, worker, admission)
// and the pipeline steps as commands. This package only wires flags and
// configuration to the library packages; it holds no logic of its own.
//
// Exit codes: 0 success, 1 a policy failure (lint threshold crossed, scan
// gate failed, signature not verified, admission denied), 2 a usage or
// runtime error.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
}
