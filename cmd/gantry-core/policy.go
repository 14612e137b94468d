//go:build !gantry_role_build

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/objects"
)

// maxManifestBytes bounds a manifest read by `gantry policy check`.
const maxManifestBytes = 32 << 20

type policyCheckResult struct {
	Allowed bool                  `json:"allowed"`
	Objects []policyCheckDecision `json:"objects"`
}

type policyCheckDecision struct {
	Index int `json:"index"`
	admission.Decision
	Skipped string `json:"skipped,omitempty"`
}

// policyCommands are the policy group's subcommands besides check, added
// by the files of the roles that have them (check is in every role that
// has the group; audit needs the cluster and the verifier).
var policyCommands []func(*app) *cobra.Command

func init() {
	register(func(a *app) *cobra.Command {
		policy := &cobra.Command{Use: "policy", Short: "Admission policy tools", Args: cobra.NoArgs}
		check := &cobra.Command{
			Use:   "check -f MANIFEST",
			Short: "Decide offline whether a manifest would be admitted (exit 0 allow, 1 deny, 2 error)",
			Long: `Runs the admission webhook's decision on every object of a manifest
(multi-document YAML or JSON, Lists expanded): Pods and the pod templates of
Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob and
ReplicationController. Other kinds are listed as skipped. Prints allow or
deny and every reason. --offline makes no registry call at all.`,
			Args: cobra.NoArgs,
		}
		f := check.Flags()
		file := f.StringP("filename", "f", "", "manifest file, or - for standard input (required)")
		verify := f.Bool("verify-signatures", true, "check image signatures (admission.verifySignatures; needs the registry)")
		offline := f.Bool("offline", false, "no registry calls: implies --verify-signatures=false; root detection relies on runAsUser/runAsNonRoot")
		namespace := f.StringP("namespace", "n", "default", "namespace for objects that name none (selects per-namespace mode and level)")
		format := outputFlag(check, "text", "json")
		check.RunE = func(cmd *cobra.Command, _ []string) error {
			outFmt, err := format()
			if err != nil {
				return err
			}
			if *file == "" {
				return usageError("-f MANIFEST is required")
			}
			ac := &a.cfg.Admission
			if cmd.Flags().Changed("verify-signatures") {
				ac.VerifySignatures = *verify
			}
			if *offline {
				if cmd.Flags().Changed("verify-signatures") && *verify {
					return usageError("--offline cannot verify signatures; drop --verify-signatures=true")
				}
				ac.VerifySignatures = false
			}
			var eval *admission.Evaluator
			if *offline {
				eval, err = admission.New(*ac, admission.Options{})
			} else {
				eval, err = onlineEvaluator(a)
			}
			if err != nil {
				return err
			}
			// Read only now: gantry-policy hands an online check on before
			// (the manifest may be standard input, readable once).
			docs, err := readManifest(*file)
			if err != nil {
				return err
			}
			res := policyCheckResult{Allowed: true}
			for _, d := range docs {
				out := policyCheckDecision{Index: d.Index, Skipped: d.Skipped}
				if d.Workload != nil {
					ns := d.Workload.Namespace
					if ns == "" {
						ns = *namespace
						d.Workload.Namespace = ns
					}
					out.Decision = eval.Evaluate(cmd.Context(), admission.Request{Operation: "CREATE", Namespace: ns, Workload: d.Workload})
					res.Allowed = res.Allowed && out.Allowed
				} else {
					out.Allowed = true
				}
				res.Objects = append(res.Objects, out)
			}
			if outFmt == "json" {
				if err := writeJSON(a.stdout, res); err != nil {
					return err
				}
			} else {
				printPolicyCheck(a.stdout, res)
			}
			if !res.Allowed {
				return policyFailure(errors.New("admission would deny the manifest"))
			}
			return nil
		}
		policy.AddCommand(check)
		for _, f := range policyCommands {
			policy.AddCommand(f(a))
		}
		return policy
	})
}

func readManifest(path string) ([]objects.Document, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		r = fh
	}
	b, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxManifestBytes)
	}
	docs, err := objects.DecodeManifest(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no objects", path)
	}
	return docs, nil
}

func printPolicyCheck(w io.Writer, res policyCheckResult) {
	for _, o := range res.Objects {
		switch {
		case o.Skipped != "":
			fmt.Fprintf(w, "SKIP   #%d %s\n", o.Index, o.Skipped)
		case !o.Allowed:
			fmt.Fprintf(w, "DENY   %s [%s, %s]\n", o.Object, o.Mode, o.Level)
		case len(o.Violations) > 0:
			fmt.Fprintf(w, "ALLOW  %s [%s, %s] with violations\n", o.Object, o.Mode, o.Level)
		default:
			fmt.Fprintf(w, "ALLOW  %s [%s, %s]\n", o.Object, o.Mode, o.Level)
		}
		for _, v := range o.Violations {
			fmt.Fprintf(w, "  - %s\n", v)
		}
		for _, e := range o.Exempt {
			fmt.Fprintf(w, "  exempt: %s\n", e)
		}
		for _, n := range o.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
	if res.Allowed {
		fmt.Fprintln(w, "allow")
	} else {
		fmt.Fprintln(w, "deny")
	}
}
