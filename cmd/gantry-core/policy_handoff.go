//go:build gantry_role_policy

package main

import (
	"fmt"
	"os"
	"syscall"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/internal/rolebin"
)

// onlineEvaluator, in gantry-policy, hands the whole command line to the
// admission role binary (or gantry-core), which has the registry client
// and the signature verifier this binary leaves out so that an offline
// check starts in milliseconds. The process is replaced: the other binary
// parses the same arguments and configuration again, and its exit code
// and output are the command's.
func onlineEvaluator(a *app) (*admission.Evaluator, error) {
	self, err := rolebin.Self()
	if err != nil {
		return nil, err
	}
	bin, err := rolebin.Find(self, rolebin.Admission)
	if err != nil {
		return nil, fmt.Errorf("without --offline, %w", err)
	}
	err = syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), a.env)
	return nil, fmt.Errorf("run %s: %w", bin, err)
}
