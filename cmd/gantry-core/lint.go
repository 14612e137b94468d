//go:build !gantry_role_admission && !gantry_role_policy

package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/builder/lint"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "lint [PATH...|-]",
			Short: "Lint Dockerfiles: Gantry's supply-chain rules, BuildKit's checks, hadolint",
			Long: "Lint each PATH: a Dockerfile, or a directory (every Dockerfile, Dockerfile.* and *.Dockerfile\n" +
				"below it); - reads one Dockerfile from stdin; no PATH means ./Dockerfile.\n" +
				"Rules, severities and ignores (lint section, inline `# gantry:ignore=RULE reason`): docs/builder.md.\n" +
				"Exit 0 clean, 1 a finding at or above lint.failOn, 2 a Dockerfile that does not parse or another error.",
		}
		fl := cmd.Flags()
		failOn := fl.String("fail-on", "", "lowest severity that fails: error, warning, info, never (default lint.failOn)")
		target := fl.String("target", "", "stage that will be built (its USER is checked); default the last stage")
		buildArgs := fl.StringArray("build-arg", nil, "build arg KEY=VALUE used to resolve FROM lines (repeatable)")
		hadolint := fl.String("hadolint", "", "hadolint binary, or off (default lint.hadolint, else hadolint on PATH)")
		stdinName := fl.String("stdin-name", "Dockerfile", "file name reported for a Dockerfile read from stdin")
		format := outputFlag(cmd, "table", "json", "sarif")
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			out, err := format()
			if err != nil {
				return err
			}
			c := a.cfg.Lint
			threshold := c.FailOn
			if *failOn != "" {
				threshold = *failOn
			}
			th, err := lint.ParseSeverity(threshold)
			if err != nil {
				return fmt.Errorf("--fail-on: %w", err)
			}
			args2, err := keyValues("--build-arg", *buildArgs)
			if err != nil {
				return err
			}
			files, err := lint.ReadFiles(args, cmd.InOrStdin(), *stdinName)
			if err != nil {
				return err
			}
			opts := lint.Options{Hadolint: c.Hadolint, Severity: c.Severity, BuildArgs: args2, Target: *target}
			if *hadolint != "" {
				opts.Hadolint = *hadolint
			}
			for _, ig := range c.Ignore {
				opts.Ignores = append(opts.Ignores, lint.Ignore{Rule: ig.Rule, Reason: ig.Reason, File: ig.File})
			}
			rep, err := lint.Lint(cmd.Context(), files, opts)
			if err != nil {
				return err // a parse error or a runtime error: exit 2
			}
			for _, n := range rep.Notes {
				a.log.Warn(n)
			}
			switch out {
			case "json":
				err = lint.WriteJSON(a.stdout, rep)
			case "sarif":
				err = lint.WriteSARIF(a.stdout, rep)
			default:
				err = lint.WriteTable(a.stdout, rep)
			}
			if err != nil {
				return err
			}
			if rep.Fails(th) {
				return policyFailure(fmt.Errorf("lint: findings at or above %s (%d error(s), %d warning(s), %d info)",
					th, rep.Count(lint.Error), rep.Count(lint.Warning), rep.Count(lint.Info)))
			}
			return nil
		}
		return cmd
	})
}

// keyValues parses repeated KEY=VALUE flags.
func keyValues(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}
