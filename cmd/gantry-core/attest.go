//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/signer"
)

// maxPredicateSize bounds a predicate file (an SBOM can be large).
const maxPredicateSize = 16 << 20

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "attest IMAGE --type slsaprovenance1|vuln|cyclonedx|URI --predicate FILE",
			Short: "Attach a signed in-toto attestation (SLSA provenance, scan result, SBOM) to an image",
			Args:  cobra.ExactArgs(1),
		}
		sf := addSigningFlags(cmd)
		typ := cmd.Flags().String("type", "", "predicate type: slsaprovenance1, vuln, cyclonedx, or a predicate type URI")
		predPath := cmd.Flags().String("predicate", "", "predicate file (JSON)")
		_ = cmd.MarkFlagRequired("type")
		_ = cmd.MarkFlagRequired("predicate")
		format := outputFlag(cmd, "text", "json")
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			f, err := format()
			if err != nil {
				return err
			}
			if _, err := signer.PredicateTypeURI(*typ); err != nil {
				return err
			}
			pred, err := readPredicate(*predPath)
			if err != nil {
				return err
			}
			s, reg, err := a.newSigner(cmd, sf)
			if err != nil {
				return err
			}
			d, _, err := signer.ResolveDigest(cmd.Context(), reg, args[0])
			if err != nil {
				return err
			}
			res, err := s.Attest(cmd.Context(), d, *typ, pred)
			if err != nil {
				return err
			}
			if f == "json" {
				return writeJSON(a.stdout, res)
			}
			if res.AlreadyAttested {
				_, err = fmt.Fprintf(a.stdout, "%s already has this %s attestation (%s)\n", res.Digest, *typ, signedWhere(res.Format, res.Tag))
			} else {
				_, err = fmt.Fprintf(a.stdout, "attested %s: %s (%s)\n", res.Digest, res.PredicateType, signedWhere(res.Format, res.Tag))
			}
			return err
		}
		return cmd
	})
}

func readPredicate(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--predicate: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxPredicateSize+1))
	if err != nil {
		return nil, fmt.Errorf("--predicate %s: %w", path, err)
	}
	if len(b) > maxPredicateSize {
		return nil, fmt.Errorf("--predicate %s: larger than %d bytes", path, maxPredicateSize)
	}
	return b, nil
}
