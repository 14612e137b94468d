package stages

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/gittest"
	"github.com/gantry-dev/gantry/pipelines"
)

type fakeDeployer struct{ cur *deploy.Deployed }

func (f *fakeDeployer) Apply(context.Context, deploy.Function) (*deploy.Result, error) {
	return nil, errors.New("not used")
}
func (f *fakeDeployer) Current(context.Context, deploy.Function) (*deploy.Deployed, error) {
	return f.cur, nil
}

type auditRecorder struct {
	events []audit.Event
	err    error
}

func (a *auditRecorder) Record(_ context.Context, e audit.Event) error {
	a.events = append(a.events, e)
	return a.err
}

// gitHistory makes main: a → b (rollback: allow) → c (no rollback), with
// the git CLI, and returns the repository and the SHAs.
func gitHistory(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	git := gittest.Git(t, dir)
	git("init", "-q", "-b", "main")
	git("config", "uploadpack.allowReachableSHA1InWant", "true")
	sha := map[string]string{}
	const fns = "version: 1\nfunctions:\n  - name: hello\n    image: registry.example/hello\n"
	for _, c := range []struct{ name, head string }{{"a", "rollback: allow\n"}, {"b", "rollback: allow\n"}, {"c", ""}} {
		if err := os.WriteFile(filepath.Join(dir, "gantry.yaml"), []byte(c.head+fns+"# "+c.name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", ".")
		git("commit", "-q", "-m", c.name)
		sha[c.name] = git("rev-parse", "HEAD")
	}
	return dir, sha
}

func TestCheckFastForward(t *testing.T) {
	repo, sha := gitHistory(t)
	cfg := config.Default()
	cfg.Pipeline.AllowLocalRepos = true
	cases := []struct {
		name       string
		run        string // commit of the run
		deployed   *deploy.Deployed
		auditErr   error
		wantFail   string // a verdict containing this
		wantErr    bool   // a malfunction
		wantAudits int
	}{
		{name: "first deploy", run: "a"},
		{name: "same commit again (a retried step)", run: "b", deployed: &deploy.Deployed{Repo: "acme/hello", Commit: "b"}},
		{name: "fast-forward", run: "c", deployed: &deploy.Deployed{Repo: "acme/hello", Commit: "a"}},
		{name: "older commit, no permission at the deployed commit", run: "b", deployed: &deploy.Deployed{Repo: "acme/hello", Commit: "c"},
			wantFail: "stale"},
		{name: "older commit, permission at the deployed commit: audited", run: "a", deployed: &deploy.Deployed{Repo: "ACME/hello", Commit: "b"},
			wantAudits: 1},
		{name: "rollback whose audit record cannot be written", run: "a", deployed: &deploy.Deployed{Repo: "acme/hello", Commit: "b"},
			auditErr: errors.New("disk full"), wantErr: true, wantAudits: 1},
		{name: "another repository's function: left to Apply's ownership check", run: "a", deployed: &deploy.Deployed{Repo: "acme/other", Commit: "c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var dep *deploy.Deployed
			if c.deployed != nil {
				d := *c.deployed
				d.Commit, d.ResourceVersion, d.Run, d.Namespace, d.Name = sha[d.Commit], "42", "run-0", "fn", "hello"
				dep = &d
			}
			rec := &auditRecorder{err: c.auditErr}
			p := &Pipeline{d: Deps{Config: cfg, Deployer: &fakeDeployer{dep}, Audit: rec}, workDir: t.TempDir()}
			p.d.Log = slog.New(slog.DiscardHandler)
			run := pipelines.Run{ID: "run-1", Repo: "acme/hello", Ref: "refs/heads/main", Commit: sha[c.run], CloneURL: "file://" + repo}
			fn := deploy.Function{Name: "hello"}
			var log bytes.Buffer
			err := p.checkFastForward(context.Background(), run, &fnState{}, &fn, &log)
			switch {
			case c.wantFail != "":
				if !errors.Is(err, pipelines.ErrStageFailed) || !strings.Contains(err.Error(), c.wantFail) ||
					!strings.Contains(err.Error(), run.Commit) || !strings.Contains(err.Error(), dep.Commit) {
					t.Fatalf("%v, want a verdict %q naming both commits", err, c.wantFail)
				}
			case c.wantErr:
				if err == nil || errors.Is(err, pipelines.ErrStageFailed) {
					t.Fatalf("%v, want a malfunction", err)
				}
			case err != nil:
				t.Fatalf("%v\n%s", err, log.String())
			}
			if dep != nil && fn.IfResourceVersion != "42" {
				t.Errorf("apply not guarded by the resourceVersion read: %q", fn.IfResourceVersion)
			}
			if len(rec.events) != c.wantAudits {
				t.Fatalf("%d audit records, want %d", len(rec.events), c.wantAudits)
			}
			if c.wantAudits > 0 {
				e := rec.events[0]
				if e.Action != ActionDeployRollback || e.Details["commit"] != run.Commit || e.Details["deployedCommit"] != dep.Commit {
					t.Errorf("audit %+v", e)
				}
			}
		})
	}
}

func TestTenantPolicy(t *testing.T) {
	cfg := config.Default()
	cfg.Deploy.Tenants = config.Tenants{Secrets: map[string][]string{"acme/hello": {"hello-*"}},
		Namespaces: map[string]string{"acme/hello": "fn-hello"}}
	p := &Pipeline{d: Deps{Config: cfg}}
	fn := deploy.Function{Name: "hello", SecretRefs: []string{"hello-api"}}
	if err := p.tenantPolicy(pipelines.Run{Repo: "acme/hello"}, &fn); err != nil || fn.Namespace != "fn-hello" {
		t.Fatalf("allowed secret: %v, namespace %q", err, fn.Namespace)
	}
	fn = deploy.Function{Name: "hello", SecretRefs: []string{"hello-api", "db-password", "admin-token"}}
	err := p.tenantPolicy(pipelines.Run{Repo: "acme/other"}, &fn)
	if !errors.Is(err, pipelines.ErrStageFailed) || !strings.Contains(err.Error(), "admin-token, db-password, hello-api") || fn.Namespace != "" {
		t.Fatalf("another repository's secrets: %v (namespace %q)", err, fn.Namespace)
	}
}

// TestHistoryFetchedFromTheMirror: the stale check fetches history from
// where the checkout comes from, the repository's mirror, found whatever
// the case of its key (as fetch finds it), not from the run's clone URL.
func TestHistoryFetchedFromTheMirror(t *testing.T) {
	repo, sha := gitHistory(t)
	cfg := config.Default()
	cfg.Pipeline.AllowLocalRepos = true
	cfg.Pipeline.Mirrors = map[string]string{"ACME/Hello": "file://" + repo}
	dep := &deploy.Deployed{Repo: "acme/hello", Commit: sha["a"], ResourceVersion: "42", Run: "run-0", Namespace: "fn", Name: "hello"}
	p := &Pipeline{d: Deps{Config: cfg, Deployer: &fakeDeployer{dep}, Log: slog.New(slog.DiscardHandler)}, workDir: t.TempDir()}
	run := pipelines.Run{ID: "run-1", Repo: "acme/hello", Ref: "refs/heads/main", Commit: sha["c"],
		CloneURL: "file://" + filepath.Join(t.TempDir(), "not-a-repository")}
	fn := deploy.Function{Name: "hello"}
	var log bytes.Buffer
	if err := p.checkFastForward(context.Background(), run, &fnState{}, &fn, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "fast-forward") {
		t.Fatalf("log: %s", log.String())
	}
}
