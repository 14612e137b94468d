package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/pipelines/repoconfig"
	"github.com/gantry-dev/gantry/pipelines/source"
)

// ActionDeployRollback is the audit action of a deploy that replaced a
// commit with one that is not its fast-forward (rollback: allow).
const ActionDeployRollback = "deploy.rollback"

// history fetches the named commits of the run's repository with bounded
// history into the run's work directory, under dir.
func (p *Pipeline) history(ctx context.Context, run pipelines.Run, dir string, commits ...string) (*source.History, error) {
	url, auth, err := p.origin(run)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(p.workDir, run.ID, dir)
	// A retried step finds the previous attempt's fetch: start afresh.
	if err := os.RemoveAll(path); err != nil {
		return nil, err
	}
	return source.FetchHistory(ctx, source.HistoryRequest{URL: url, Auth: auth, AllowLocal: p.d.Config.Pipeline.AllowLocalRepos,
		Dir: path}, append([]string{run.Commit}, commits...)...)
}

// supersede orders the run against the other runs of its ref in flight,
// by git ancestry (pipelines.Supersede). It reports whether the run was
// stopped (a newer commit of the ref is in flight). Failing to order is
// not fatal: the deploy step's fast-forward check still guards what is
// deployed.
func (p *Pipeline) supersede(ctx context.Context, run pipelines.Run, log io.Writer) (stopped bool, reason string, err error) {
	s, err := pipelines.Supersede(ctx, run, func(ctx context.Context, commits []string) (map[string]pipelines.Order, error) {
		h, err := p.history(ctx, run, "history-supersede", commits...)
		if err != nil {
			return nil, err
		}
		out := map[string]pipelines.Order{}
		for _, c := range commits {
			rel, err := h.Relate(run.Commit, c)
			if err != nil {
				return nil, err
			}
			switch rel {
			case source.Descends:
				out[c] = pipelines.Newer
			case source.Precedes:
				out[c] = pipelines.Older
			case source.Same:
				out[c] = pipelines.SameCommit
			}
		}
		return out, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return false, "", ctx.Err()
		}
		fmt.Fprintf(log, "could not order this run against the other runs of %s (none cancelled): %v\n", run.Ref, err)
		return false, "", nil
	}
	for _, id := range s.Cancelled {
		fmt.Fprintf(log, "cancelled run %s: its commit is in the history of %s\n", id, shortSHA(run.Commit))
	}
	if s.Stopped {
		fmt.Fprintln(log, s.Reason)
	}
	return s.Stopped, s.Reason, nil
}

// tenantPolicy applies the server's tenant policy to fn: the namespace of
// the run's repository, and the Secrets it may mount.
func (p *Pipeline) tenantPolicy(run pipelines.Run, fn *deploy.Function) error {
	t := &p.d.Config.Deploy.Tenants
	if ns := t.Namespace(run.Repo); ns != "" {
		fn.Namespace = ns
	}
	var refused []string
	for _, s := range fn.SecretRefs {
		if !t.SecretAllowed(run.Repo, s) {
			refused = append(refused, s)
		}
	}
	if len(refused) > 0 {
		sort.Strings(refused)
		return pipelines.Fail("secrets %s: repository %s may not mount them (server policy deploy.tenants.secrets lists the Secrets each repository may mount; none by default): ask an operator to allow them, or remove them from the function",
			strings.Join(refused, ", "), run.Repo)
	}
	return nil
}

// checkFastForward refuses to deploy f's commit over a deployed commit it
// does not descend from: a replayed old push, or a force push, would
// otherwise roll the function back. The repository may allow rollbacks
// (rollback: allow in gantry.yaml at the deployed commit); such a deploy
// is audited. fn.IfResourceVersion is set to the workload read, so that a
// deploy landing in between makes the apply fail (and the step is retried
// against it).
func (p *Pipeline) checkFastForward(ctx context.Context, run pipelines.Run, f *fnState, fn *deploy.Function, log io.Writer) error {
	cur, err := p.d.Deployer.Current(ctx, *fn)
	if err != nil {
		if errors.Is(err, deploy.ErrInvalid) {
			return pipelines.Fail("%v", err)
		}
		return err
	}
	if cur == nil {
		fmt.Fprintf(log, "first deploy of %s\n", fn.Name)
		return nil
	}
	fn.IfResourceVersion = cur.ResourceVersion
	if !strings.EqualFold(cur.Repo, run.Repo) {
		return nil // Apply refuses it, naming the owner
	}
	if cur.Commit == "" || cur.Commit == run.Commit {
		return nil
	}
	h, err := p.history(ctx, run, "history-"+f.Spec.Name, cur.Commit)
	if err != nil {
		return fmt.Errorf("fetching the history of %s and of the deployed commit %s: %w", shortSHA(run.Commit), shortSHA(cur.Commit), err)
	}
	rel, err := h.Relate(run.Commit, cur.Commit)
	if err != nil {
		return err
	}
	if rel == source.Descends {
		fmt.Fprintf(log, "commit %s is a fast-forward of the deployed commit %s\n", shortSHA(run.Commit), shortSHA(cur.Commit))
		return nil
	}
	why := map[source.Relation]string{
		source.Precedes: "it is older: it is in the deployed commit's history",
		source.Diverged: "the histories diverged (rewritten by a force push?)",
		source.Unknown:  fmt.Sprintf("the deployed commit is not within %d commits of its history", source.DefaultHistoryDepth),
	}[rel]
	what := fmt.Sprintf("commit %s is not a descendant of the deployed commit %s (run %s) of %s/%s: %s",
		run.Commit, cur.Commit, cur.Run, cur.Namespace, cur.Name, why)
	allowed, cfgErr := rollbackAllowed(h, cur.Commit)
	if !allowed {
		if cfgErr != nil {
			fmt.Fprintf(log, "rollback permission not read from %s at %s: %v\n", repoconfig.GantryFile, shortSHA(cur.Commit), cfgErr)
		}
		return pipelines.Fail("stale: %s; refusing to replace it (an older commit never replaces a newer one). A repository that means to roll back says `rollback: allow` in %s",
			what, repoconfig.GantryFile)
	}
	fmt.Fprintf(log, "ROLLBACK allowed by rollback: allow in %s at the deployed commit %s: %s\n", repoconfig.GantryFile, shortSHA(cur.Commit), what)
	p.d.Log.Warn("rollback deploy (rollback: allow)", "run", run.ID, "repo", run.Repo, "function", fn.Name,
		"commit", run.Commit, "deployedCommit", cur.Commit, "deployedRun", cur.Run)
	if p.d.Audit != nil {
		err := p.d.Audit.Record(ctx, audit.Event{Action: ActionDeployRollback, Target: cur.Namespace + "/" + cur.Kind + "/" + cur.Name,
			Reason: what + "; allowed by rollback: allow in " + repoconfig.GantryFile,
			Details: map[string]string{"run": run.ID, "repo": run.Repo, "ref": run.Ref, "commit": run.Commit,
				"deployedCommit": cur.Commit, "deployedRun": cur.Run, "deliveryId": run.DeliveryID}})
		if err != nil {
			// Fail closed: a rollback that cannot be audited does not happen.
			return fmt.Errorf("audit record of the rollback not written: %w", err)
		}
	}
	return nil
}

// rollbackAllowed reads gantry.yaml at the deployed commit: the
// repository's word as of what runs now, not the older commit's.
func rollbackAllowed(h *source.History, commit string) (bool, error) {
	b, err := h.ReadFile(commit, repoconfig.GantryFile, 1<<20)
	if err != nil {
		return false, err
	}
	r, err := repoconfig.ParseGantry(b)
	if err != nil {
		return false, err
	}
	return r.Overrides.RollbackAllowed(), nil
}
