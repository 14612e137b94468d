//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/signer"
)

// signingFlags are the key flags shared by sign and attest; they override
// the signer section of the config for one run.
type signingFlags struct {
	key, passwordFile string
	format            string
}

func addSigningFlags(cmd *cobra.Command) *signingFlags {
	f := &signingFlags{}
	cmd.Flags().StringVar(&f.key, "key", "", "cosign private key file (overrides signer.keySource/keyFile); password from signer.passwordFile or $COSIGN_PASSWORD")
	cmd.Flags().StringVar(&f.passwordFile, "password-file", "", "file holding the key's password (overrides signer.passwordFile)")
	cmd.Flags().StringVar(&f.format, "format", "", "legacy (tag-based .sig/.att, cosign v2), bundle (Sigstore bundle as OCI referrer, cosign v3) or both (overrides signer.format)")
	return f
}

func (f *signingFlags) apply(c config.Signer) config.Signer {
	if f.key != "" {
		c.KeySource, c.KeyFile = "file", f.key
	}
	if f.passwordFile != "" {
		c.PasswordFile = f.passwordFile
	}
	if f.format != "" {
		c.Format = f.format
	}
	return c
}

// newSigner builds the registry client and the signer for one command.
func (a *app) newSigner(cmd *cobra.Command, f *signingFlags) (*signer.Signer, *oci.Client, error) {
	reg, err := oci.New(a.cfg.Registry)
	if err != nil {
		return nil, nil, err
	}
	s, err := signer.New(cmd.Context(), f.apply(a.cfg.Signer), reg,
		signer.WithLogger(a.log), signer.WithGetenv(func(k string) string { return lookupEnv(a.env, k) }))
	if err != nil {
		return nil, nil, err
	}
	return s, reg, nil
}

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "sign IMAGE",
			Short: "Sign an image by digest (cosign-compatible); a signed digest is left as is",
			Args:  cobra.ExactArgs(1),
		}
		sf := addSigningFlags(cmd)
		format := outputFlag(cmd, "text", "json")
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			f, err := format()
			if err != nil {
				return err
			}
			s, reg, err := a.newSigner(cmd, sf)
			if err != nil {
				return err
			}
			d, fromTag, err := signer.ResolveDigest(cmd.Context(), reg, args[0])
			if err != nil {
				return err
			}
			if fromTag {
				a.log.Warn("signing the digest the tag points at now; deploy by digest", "tag", args[0], "digest", d.String())
			}
			res, err := s.Sign(cmd.Context(), d)
			if err != nil {
				return err
			}
			if f == "json" {
				return writeJSON(a.stdout, res)
			}
			if res.AlreadySigned {
				_, err = fmt.Fprintf(a.stdout, "%s already signed by this key (%s)\n", res.Digest, signedWhere(res.Format, res.Tag))
			} else {
				_, err = fmt.Fprintf(a.stdout, "signed %s (%s)\n", res.Digest, signedWhere(res.Format, res.Tag))
			}
			return err
		}
		return cmd
	})
}

// signedWhere says where a signature or attestation was stored.
func signedWhere(format, tag string) string {
	switch format {
	case signer.FormatBundle:
		return "Sigstore bundle, OCI referrer"
	case signer.FormatBoth:
		return tag + " and Sigstore bundle, OCI referrer"
	}
	return tag
}
