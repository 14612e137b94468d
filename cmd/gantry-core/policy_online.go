//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/online"
)

// onlineEvaluator is the evaluator `policy check` uses without --offline:
// tags resolved and image configs read in the registry, signatures
// verified when the configuration asks.
func onlineEvaluator(a *app) (*admission.Evaluator, error) {
	return online.Build(a.cfg, online.Options{})
}
