//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/signer"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "verify IMAGE",
			Short: "Verify an image's signatures and attestations against a policy",
			Long: "Verify IMAGE (a tag is resolved to its digest first) against the trusted identities,\n" +
				"threshold and attestation requirements of a policy file (--policy, else signer.policy).\n" +
				"Exit 0 verified, 1 not verified, 2 error (including an unreachable registry).",
			Args: cobra.ExactArgs(1),
		}
		policyPath := cmd.Flags().String("policy", "", "verification policy file (default: signer.policy from the config)")
		format := outputFlag(cmd, "text", "json")
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			f, err := format()
			if err != nil {
				return err
			}
			path := *policyPath
			if path == "" {
				path = a.cfg.Signer.Policy
			}
			if path == "" {
				return errors.New("no verification policy: pass --policy FILE or set signer.policy (see docs/signer.md)")
			}
			pol, err := signer.LoadPolicy(path)
			if err != nil {
				return err
			}
			reg, err := oci.New(a.cfg.Registry)
			if err != nil {
				return err
			}
			v, err := signer.NewVerifier(pol, reg)
			if err != nil {
				return err
			}
			d, _, err := signer.ResolveDigest(cmd.Context(), reg, args[0])
			if err != nil {
				return err
			}
			res, err := v.Verify(cmd.Context(), d)
			if err != nil {
				return err
			}
			if f == "json" {
				if err := writeJSON(a.stdout, res); err != nil {
					return err
				}
			} else if res.Verified {
				fmt.Fprintln(a.stdout, res.Message)
			}
			switch {
			case res.Verified:
				return nil
			case res.Reason == signer.RegistryUnreachable:
				return errors.New(res.Message) // not a verdict: exit 2
			default:
				return policyFailure(fmt.Errorf("not verified (%s): %s", res.Reason, res.Message))
			}
		}
		return cmd
	})
}
