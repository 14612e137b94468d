//go:build !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/admission/clusteraudit"
	"github.com/gantry-dev/gantry/admission/online"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/kubeconfig"
)

// newPolicyAuditCmd is `gantry policy audit`.
func init() { policyCommands = append(policyCommands, newPolicyAuditCmd) }

func newPolicyAuditCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "List running workloads admission would deny now (exit 0 none, 1 some, 2 error)",
		Long: `Lists the Pods and the Deployments, ReplicaSets, StatefulSets, DaemonSets,
Jobs, CronJobs and ReplicationControllers of the function namespaces
(admission.audit.namespaces, else deploy.namespace; or -n) and judges each
with the admission webhook's own policy: the same rules, reasons and fixes.
Whatever a namespace's mode is today, an object with a violation is listed
as one admission would deny once enforced. Pods, ReplicaSets and Jobs with
the same violations as their controller are reported once, under it.
Needs "list" on those resources in those namespaces. See docs/admission.md.`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	namespaces := f.StringSliceP("namespace", "n", nil, "namespace to audit (repeatable; default admission.audit.namespaces, else deploy.namespace)")
	selector := f.StringP("selector", "l", "", "label selector over the workloads (default admission.audit.selector)")
	kubeconfig := f.String("kubeconfig", "", "kubeconfig file (default admission.audit.kubeconfig, else in-cluster, else $KUBECONFIG)")
	timeout := f.Duration("timeout", 5*time.Minute, "bound on the whole audit")
	format := outputFlag(cmd, "table", "json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		outFmt, err := format()
		if err != nil {
			return err
		}
		ac := a.cfg.Admission.Audit
		if len(*namespaces) > 0 {
			ac.Namespaces = *namespaces
		}
		if cmd.Flags().Changed("selector") {
			ac.Selector = *selector
		}
		if *kubeconfig != "" {
			ac.Kubeconfig = *kubeconfig
		}
		if *timeout <= 0 {
			return usageError("--timeout must be positive")
		}
		dyn, err := auditClient(ac)
		if err != nil {
			return err
		}
		eval, err := online.Build(a.cfg, online.Options{})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), *timeout)
		defer cancel()
		rep, err := clusteraudit.Run(ctx, eval, dyn, auditOptions(a.cfg, ac))
		if err != nil {
			return &exitError{code: exitFailure, err: fmt.Errorf("policy audit: %w", err)}
		}
		if outFmt == "json" {
			err = writeJSON(a.stdout, rep)
		} else {
			err = clusteraudit.WriteTable(a.stdout, rep)
		}
		if err != nil {
			return err
		}
		if rep.Denied > 0 {
			return policyFailure(fmt.Errorf("admission would deny %d running workload(s)", rep.Denied))
		}
		return nil
	}
	return cmd
}

// auditOptions resolves the namespaces: admission.audit.namespaces, else
// the function namespace deploy.namespace.
func auditOptions(cfg *config.Config, ac config.AdmissionAudit) clusteraudit.Options {
	ns := ac.Namespaces
	if len(ns) == 0 && cfg.Deploy.Namespace != "" {
		ns = []string{cfg.Deploy.Namespace}
	}
	return clusteraudit.Options{Namespaces: ns, Selector: ac.Selector}
}

// auditClient is the API client of the audit, every request bounded by
// admission.audit.requestTimeout.
func auditClient(ac config.AdmissionAudit) (dynamic.Interface, error) {
	rc, err := kubeconfig.Load(ac.Kubeconfig)
	if err != nil {
		return nil, err
	}
	rc = rest.CopyConfig(rc)
	rc.Timeout = ac.RequestTimeout
	rc.UserAgent = "gantry-policy-audit"
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, errors.New("kubernetes client: " + err.Error())
	}
	return dyn, nil
}
