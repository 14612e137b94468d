//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/deploy"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "deploy NAME IMAGE",
			Short: "Apply a function (pinned image) to the function namespace",
			Long: "Server-side apply of function NAME running IMAGE (repo@sha256:…; a tag is refused) as a\n" +
				"hardened Deployment + Service, or an OpenFaaS Function when that CRD is installed\n" +
				"(deploy.mode). Waits for the rollout when deploy.waitForRollout is set. See docs/deploy.md.\n" +
				"Exit 0 deployed, 1 refused by admission, 2 any other error.",
			Args: cobra.ExactArgs(2),
		}
		fl := cmd.Flags()
		namespace := fl.String("namespace", "", "function namespace (default deploy.namespace)")
		env := fl.StringArray("env", nil, "environment variable KEY=VALUE (repeatable)")
		secrets := fl.StringArray("secret", nil, "Secret to mount under /var/openfaas/secrets (repeatable; referenced, never copied)")
		var res deploy.Resources
		fl.StringVar(&res.CPURequest, "cpu-request", "", "CPU request (default deploy.defaultResources)")
		fl.StringVar(&res.MemoryRequest, "memory-request", "", "memory request")
		fl.StringVar(&res.CPULimit, "cpu-limit", "", "CPU limit")
		fl.StringVar(&res.MemoryLimit, "memory-limit", "", "memory limit")
		var scale deploy.Scale
		fl.Int32Var(&scale.Min, "min", 1, "replicas (OpenFaaS: minimum)")
		fl.Int32Var(&scale.Max, "max", 0, "OpenFaaS maximum replicas (0: unset)")
		var labels deploy.RunLabels
		fl.StringVar(&labels.RunID, "run-id", "", "run id recorded on the objects")
		fl.StringVar(&labels.Repo, "repo", "", "source repository (owner/name) recorded on the objects")
		fl.StringVar(&labels.Commit, "commit", "", "source commit recorded on the objects")
		fl.StringVar(&labels.Ref, "ref", "", "source ref recorded on the objects")
		format := outputFlag(cmd, "text", "json")
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			f, err := format()
			if err != nil {
				return err
			}
			fn := deploy.Function{Name: args[0], Image: args[1], Namespace: *namespace, SecretRefs: *secrets,
				Resources: res, Scale: scale, Labels: labels}
			if len(*env) > 0 {
				fn.Env = map[string]string{}
				for _, kv := range *env {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return fmt.Errorf("--env %q: want KEY=VALUE", kv)
					}
					fn.Env[k] = v
				}
			}
			rc, err := deploy.RESTConfig(a.cfg.Deploy.Kubeconfig)
			if err != nil {
				return err
			}
			d, err := deploy.New(a.cfg.Deploy, rc)
			if err != nil {
				return err
			}
			result, err := d.Apply(cmd.Context(), fn)
			if result != nil {
				if f == "json" {
					if werr := writeJSON(a.stdout, result); werr != nil {
						return werr
					}
				} else {
					for _, o := range result.Objects {
						fmt.Fprintf(a.stdout, "%s %s/%s applied (generation %d)\n", o.Kind, o.Namespace, o.Name, o.Generation)
					}
					for _, w := range result.Warnings {
						fmt.Fprintf(a.stdout, "warning: %s\n", w)
					}
					if result.RolledOut {
						fmt.Fprintf(a.stdout, "rolled out %s\n", result.Image)
					}
				}
			}
			if deploy.IsAdmissionDenied(err) {
				return policyFailure(err) // a verdict: exit 1
			}
			return err
		}
		return cmd
	})
}
