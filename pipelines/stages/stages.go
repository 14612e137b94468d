// Package stages holds the real stages of a Gantry run: checkout, lint,
// build, scan, sign, deploy and notify, as pipelines.Stage values for the
// queue's workers (gantry serve, gantry worker) and for `gantry run`.
//
// A run may build several functions (one repository, many functions). The
// worker runs stages one after another for the whole run; inside a stage
// the run's functions are worked on in parallel (pipeline.parallel). A
// function that fails a stage (a lint finding, a scan gate, an admission
// denial) takes no part in the later stages, while the other functions go
// on; the run's verdict is the worst of its functions. When no function is
// left after a stage, that stage fails (the run record then names it), and
// the notification is sent from there, since later stages will not run.
// A malfunction (registry down, daemon gone) is an error: the worker
// retries the stage, which is safe because every stage is idempotent
// (a rebuild gives the cached digest, a re-sign of a signed digest writes
// nothing, deploy is server-side apply).
//
// Stages hand each other what they learnt (the repository's functions, the
// image digests, the failures) through the run record's outputs, as JSON
// under the key "pipeline", so a run resumed by another worker has it all.
// Two things are kept only in the worker's memory because they are large
// and derivable: the checkout (fetched again when missing) and the scan's
// attestation predicates (the image is scanned again when missing).
package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/builder"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/files"
	"github.com/gantry-dev/gantry/notify"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/pipelines/repoconfig"
	"github.com/gantry-dev/gantry/pipelines/source"
	"github.com/gantry-dev/gantry/scanner"
	"github.com/gantry-dev/gantry/signer"
)

// Stage names, in the order they run.
const (
	Checkout = "checkout"
	Lint     = "lint"
	Build    = "build"
	Scan     = "scan"
	Sign     = "sign"
	Deploy   = "deploy"
	Notify   = "notify"
)

// OutputState is the run output key holding the pipeline's state (JSON).
const OutputState = "pipeline"

// OutputImagePrefix prefixes the run outputs holding each function's image
// by digest ("image.hello": "registry/fn/hello@sha256:…").
const OutputImagePrefix = "image."

// OutputIgnoresPrefix prefixes the run outputs listing, as JSON, the
// ignore entries the scan gate used for each function ("ignores.hello").
const OutputIgnoresPrefix = "ignores."

// OutputNotifications is the run output key holding the notify deliveries.
const OutputNotifications = "notifications"

// Builder builds and pushes one image (builder.Builder).
type Builder interface {
	Build(ctx context.Context, req builder.Request, progress builder.Progress) (*builder.Result, error)
}

// Scanner scans one image by digest (scanner.Scanner).
type Scanner interface {
	Scan(ctx context.Context, ref string) (*scanner.Result, error)
}

// Signer signs and attests digests (signer.Signer).
type Signer interface {
	Sign(ctx context.Context, d name.Digest) (*signer.SignResult, error)
	Attest(ctx context.Context, d name.Digest, predicateType string, predicate []byte) (*signer.AttestResult, error)
}

// Deployer applies one function (deploy.Deployer).
type Deployer interface {
	Apply(ctx context.Context, fn deploy.Function) (*deploy.Result, error)
	// Current reads the function as deployed now (nil: not deployed).
	Current(ctx context.Context, fn deploy.Function) (*deploy.Deployed, error)
}

// Notifier reports a run (notify.Notifier).
type Notifier interface {
	Notify(ctx context.Context, run notify.Run) notify.Report
}

// ReportSink receives the reports a stage makes (lint SARIF, scan JSON and
// SARIF, SBOM) beside the stage log, e.g. `gantry run --sarif-dir`.
type ReportSink func(run pipelines.Run, function, name string, body []byte)

// Deps are what the stages need. Signer, Deployer and Notifier may be nil:
// the stage is then skipped (and says so in its log).
type Deps struct {
	Config   *config.Config
	Builder  Builder
	Scanner  Scanner
	Signer   Signer
	Deployer Deployer
	Notifier Notifier
	// ResolveDigest turns an image reference into a digest reference with
	// the registry client (signer.ResolveDigest).
	ResolveDigest func(ctx context.Context, ref string) (name.Digest, error)
	// RunURL links a run for notifications; nil: no link.
	RunURL func(id string) string
	// Reports, when set, receives every report made.
	Reports ReportSink
	// LogReports also writes each report into the stage log, so that it is
	// stored with the run (the workers); `gantry run` writes files instead.
	LogReports bool
	// Repo is `gantry run`'s --function/--context/--dockerfile/--image,
	// applied to the repository's configuration (repoconfig.LoadWith).
	// The workers leave it zero: a push builds what its commit says.
	Repo repoconfig.Override
	// Audit receives the deploys that bend policy (rollbacks); nil: only
	// logged.
	Audit audit.Sink
	// GitAuth, when set, replaces pipeline.gitTokenFile/gitSSHKeyFile: the
	// credentials `gantry run --repo` took out of its URL, so that the
	// run's clone URL (logs, output, provenance) never carries them.
	GitAuth *source.Auth
	Log     *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Pipeline is the set of stages sharing one Deps and the in-memory caches.
type Pipeline struct {
	d        Deps
	workDir  string
	mu       sync.Mutex
	scans    map[string]*scanArtifacts // run id + "/" + function
	fetching map[string]*sync.Mutex    // run id → checkout lock
}

// scanArtifacts are a scan's outputs the sign stage attests.
type scanArtifacts struct {
	vuln []byte // cosign vuln/v1 predicate
	sbom []byte // CycloneDX JSON
}

// New checks deps and prepares the work directory.
func New(d Deps) (*Pipeline, error) {
	if d.Config == nil || d.Builder == nil || d.Scanner == nil || d.ResolveDigest == nil {
		return nil, errors.New("stages: Config, Builder, Scanner and ResolveDigest are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	wd := d.Config.Pipeline.WorkDir
	if wd == "" {
		wd = filepath.Join(os.TempDir(), "gantry-runs")
	}
	if err := os.MkdirAll(wd, 0o700); err != nil {
		return nil, fmt.Errorf("pipeline.workDir %s: %w", wd, err)
	}
	return &Pipeline{d: d, workDir: wd, scans: map[string]*scanArtifacts{}, fetching: map[string]*sync.Mutex{}}, nil
}

// Stages returns the stages in order, for pipelines.WorkerOptions.
func (p *Pipeline) Stages() []pipelines.Stage {
	return []pipelines.Stage{
		&checkoutStage{p},
		&fnStage{p: p, name: Lint, run: p.lint, needsSource: true},
		&fnStage{p: p, name: Build, run: p.build, needsSource: true},
		&fnStage{p: p, name: Scan, run: p.scan},
		&fnStage{p: p, name: Sign, run: p.sign},
		&fnStage{p: p, name: Deploy, run: p.deploy},
		&notifyStage{p},
	}
}

// state is what the stages hand each other, stored in the run's outputs.
type state struct {
	// Source is the config file the functions came from.
	Source    string               `json:"source"`
	Overrides repoconfig.Overrides `json:"overrides"`
	// RepoIgnores is the repository's scan ignore file, as read at checkout.
	RepoIgnores []byte     `json:"repoIgnores,omitempty"`
	Functions   []*fnState `json:"functions"`
}

// fnState is one function's progress.
type fnState struct {
	Spec repoconfig.Function `json:"spec"`
	// Image is repo@digest once built.
	Image         string    `json:"image,omitempty"`
	BuildStarted  time.Time `json:"buildStarted,omitzero"`
	BuildFinished time.Time `json:"buildFinished,omitzero"`
	// FailedStage and Reason are set when the function failed a stage.
	FailedStage string            `json:"failedStage,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Findings    []notify.Finding  `json:"findings,omitempty"`
	Stages      []notify.Stage    `json:"stages,omitempty"`
	Deployed    []string          `json:"deployed,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
	// Ignores are the ignore entries the scan gate used (also attested).
	Ignores []notify.Ignore `json:"ignores,omitempty"`
}

func (f *fnState) alive() bool { return f.FailedStage == "" }

// dockerfile is the function's Dockerfile path relative to the repo root.
func (f *fnState) dockerfile() string {
	df := f.Spec.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	return filepath.ToSlash(filepath.Join(f.Spec.Context, df))
}

func loadState(run pipelines.Run) (*state, error) {
	raw, ok := run.Outputs[OutputState]
	if !ok {
		return nil, errors.New("the run has no pipeline state: the checkout stage did not pass")
	}
	var st state
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, fmt.Errorf("the run's pipeline state does not decode: %w", err)
	}
	return &st, nil
}

func (st *state) outputs() (map[string]string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	out := map[string]string{OutputState: string(b)}
	for _, f := range st.Functions {
		if f.Image != "" {
			out[OutputImagePrefix+f.Spec.Name] = f.Image
		}
		if len(f.Ignores) > 0 {
			b, err := json.Marshal(f.Ignores)
			if err != nil {
				return nil, err
			}
			out[OutputIgnoresPrefix+f.Spec.Name] = string(b)
		}
	}
	return out, nil
}

// State decodes the pipeline state of a finished run for callers that
// print results (gantry run, tests).
func State(run pipelines.Run) ([]FunctionResult, error) {
	st, err := loadState(run)
	if err != nil {
		return nil, err
	}
	out := make([]FunctionResult, 0, len(st.Functions))
	for _, f := range st.Functions {
		out = append(out, FunctionResult{Name: f.Spec.Name, Dockerfile: f.dockerfile(), Image: f.Image,
			FailedStage: f.FailedStage, Reason: f.Reason, Findings: f.Findings, Stages: f.Stages, Deployed: f.Deployed,
			Ignores: f.Ignores})
	}
	return out, nil
}

// FunctionResult is one function's outcome, for printing.
type FunctionResult struct {
	Name        string           `json:"name"`
	Dockerfile  string           `json:"dockerfile"`
	Image       string           `json:"image,omitempty"`
	FailedStage string           `json:"failedStage,omitempty"`
	Reason      string           `json:"reason,omitempty"`
	Findings    []notify.Finding `json:"findings,omitempty"`
	Stages      []notify.Stage   `json:"stages,omitempty"`
	Deployed    []string         `json:"deployed,omitempty"`
	Ignores     []notify.Ignore  `json:"ignores,omitempty"`
}

// checkoutDir is where the run's commit is checked out.
func (p *Pipeline) checkoutDir(runID string) string {
	return filepath.Join(p.workDir, runID, "src")
}

// fetch checks the run's commit out afresh.
func (p *Pipeline) fetch(ctx context.Context, run pipelines.Run) (*source.Checkout, error) {
	dir := p.checkoutDir(run.ID)
	if err := os.RemoveAll(filepath.Dir(dir)); err != nil {
		return nil, err
	}
	url, auth, err := p.origin(run)
	if err != nil {
		return nil, err
	}
	return source.Fetch(ctx, source.Request{URL: url, Commit: run.Commit, Dir: dir, Auth: auth,
		AllowLocal: p.d.Config.Pipeline.AllowLocalRepos})
}

// origin is where and how the run's repository is fetched: its URL
// (sourceURL) and the git credentials; the checkout and the history
// fetches use it alike.
func (p *Pipeline) origin(run pipelines.Run) (string, source.Auth, error) {
	auth, err := p.gitAuth()
	if err != nil {
		return "", auth, err
	}
	url, err := p.sourceURL(run)
	return url, auth, err
}

// sourceURL is where the run's repository is fetched from: its mirror
// (pipeline.mirrors, keyed by repository case-insensitively), else the
// run's clone URL. The checkout and the history fetches use it alike.
func (p *Pipeline) sourceURL(run pipelines.Run) (string, error) {
	if m := p.d.Config.Pipeline.Mirror(run.Repo); m != "" {
		return m, nil
	}
	if run.CloneURL == "" {
		return "", pipelines.Fail("the run names no clone URL for %s (and pipeline.mirrors has none)", run.Repo)
	}
	return run.CloneURL, nil
}

// ensureSource makes sure the checkout exists (a resumed run on another
// worker, or after a restart, has none) and returns its directory.
func (p *Pipeline) ensureSource(ctx context.Context, run pipelines.Run, log io.Writer) (string, error) {
	p.mu.Lock()
	l := p.fetching[run.ID]
	if l == nil {
		l = &sync.Mutex{}
		p.fetching[run.ID] = l
	}
	p.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	dir := p.checkoutDir(run.ID)
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		return dir, nil
	}
	fmt.Fprintf(log, "checkout of %s not on this worker: fetching it again\n", shortSHA(run.Commit))
	if _, err := p.fetch(ctx, run); err != nil {
		return "", err
	}
	// Template functions build from contexts laid out at checkout: lay
	// them out again, the same way (pinned templates, same commit).
	repo, err := repoconfig.LoadWith(dir, p.d.Repo)
	if err == nil {
		err = p.shrinkwrap(ctx, dir, repo, log)
	}
	if err != nil {
		return "", pipelines.Fail("repository configuration: %v", err)
	}
	return dir, nil
}

// shrinkwrap lays out the build contexts of the repository's OpenFaaS
// template functions (repoconfig.Shrinkwrap); pinned template sources are
// fetched without credentials into the run's directory.
func (p *Pipeline) shrinkwrap(ctx context.Context, dir string, repo *repoconfig.Repo, log io.Writer) error {
	c := p.d.Config.Pipeline
	err := repoconfig.Shrinkwrap(ctx, dir, repo, repoconfig.TemplateOptions{
		Hosts: c.TemplateHosts, AllowLocal: c.AllowLocalRepos, WorkDir: filepath.Dir(dir),
		Fetch: func(ctx context.Context, url, commit, into string) error {
			_, err := source.Fetch(ctx, source.Request{URL: url, Commit: commit, Dir: into, AllowLocal: c.AllowLocalRepos})
			return err
		}})
	if err != nil {
		return err
	}
	for _, f := range repo.Functions {
		if f.Template != "" {
			fmt.Fprintf(log, "function %s: template %s laid out in %s (handler %s)\n", f.Name, f.Template, f.Context, f.Handler)
		}
	}
	return nil
}

func (p *Pipeline) gitAuth() (source.Auth, error) {
	if p.d.GitAuth != nil {
		return *p.d.GitAuth, nil
	}
	c := p.d.Config.Pipeline
	a := source.Auth{SSHKeyFile: c.GitSSHKeyFile, SSHKnownHosts: c.GitKnownHostsFile}
	if c.GitTokenFile != "" {
		b, err := os.ReadFile(c.GitTokenFile)
		if err != nil {
			return a, fmt.Errorf("pipeline.gitTokenFile: %w", err)
		}
		a.Token = strings.TrimSpace(string(b))
	}
	return a, nil
}

// cleanup drops what the run kept on this worker.
func (p *Pipeline) cleanup(runID string) {
	p.mu.Lock()
	for k := range p.scans {
		if strings.HasPrefix(k, runID+"/") {
			delete(p.scans, k)
		}
	}
	delete(p.fetching, runID)
	p.mu.Unlock()
	if err := os.RemoveAll(filepath.Join(p.workDir, runID)); err != nil {
		p.d.Log.Warn("run checkout not removed", "run", runID, "err", err)
	}
}

// checkoutStage fetches the commit and reads the repository's config.
type checkoutStage struct{ p *Pipeline }

func (s *checkoutStage) Name() string { return Checkout }

func (s *checkoutStage) Run(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
	p := s.p
	co, err := p.fetch(ctx, run)
	if err != nil {
		return nil, err // unreachable remote, auth: an error, retried
	}
	fmt.Fprintf(log, "checked out %s at %s (shallow %v): %s\n", signer.WithoutUserinfo(run.CloneURL), co.Commit, co.Shallow, co.Subject)
	if stopped, reason, err := p.supersede(ctx, run, log); err != nil {
		return nil, err
	} else if stopped {
		p.cleanup(run.ID)
		return nil, pipelines.Fail("%s", reason)
	}
	repo, err := repoconfig.LoadWith(co.Dir, p.d.Repo)
	if errors.Is(err, repoconfig.ErrOverride) {
		// The command line does not fit the repository: an error for the
		// person running it (exit 2), not a verdict on the commit.
		return nil, err
	}
	if err == nil {
		err = p.shrinkwrap(ctx, co.Dir, repo, log)
	}
	if err != nil {
		err = pipelines.Fail("repository configuration: %v", err)
		p.finish(ctx, run, nil, err, log)
		return nil, err
	}
	st := &state{Source: repo.Source, Overrides: repo.Overrides}
	if f := repo.Overrides.Scan.IgnoreFile; f != "" {
		b, err := files.ReadBounded(filepath.Join(co.Dir, filepath.FromSlash(f)), 1<<20)
		if err != nil {
			err = pipelines.Fail("repository scan ignore file %s: %v", f, err)
			p.finish(ctx, run, nil, err, log)
			return nil, err
		}
		st.RepoIgnores = b
	}
	for _, f := range repo.Functions {
		st.Functions = append(st.Functions, &fnState{Spec: f})
	}
	fmt.Fprintf(log, "%s: %d function(s): %s\n", repo.Source, len(repo.Functions), strings.Join(repo.Names(), ", "))
	if p.d.Notifier != nil {
		// Pending commit statuses, so the push shows Gantry at work.
		rep := p.d.Notifier.Notify(ctx, p.notifyRun(run, st, notify.VerdictPending))
		writeDeliveries(log, rep)
	}
	return st.outputs()
}

// stepFunc does one stage for one function. It returns nil, a verdict
// (pipelines.Fail) or a malfunction.
type stepFunc func(ctx context.Context, run pipelines.Run, st *state, f *fnState, src string, log io.Writer) error

// fnStage runs a step for every function still in the race.
type fnStage struct {
	p           *Pipeline
	name        string
	run         stepFunc
	needsSource bool
}

func (s *fnStage) Name() string { return s.name }

func (s *fnStage) Run(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
	p := s.p
	st, err := loadState(run)
	if err != nil {
		return nil, err
	}
	src := ""
	if s.needsSource {
		if src, err = p.ensureSource(ctx, run, log); err != nil {
			return nil, err
		}
	}
	var alive []*fnState
	for _, f := range st.Functions {
		if f.alive() {
			alive = append(alive, f)
		}
	}
	lw := &lockedWriter{w: log}
	type result struct {
		f   *fnState
		err error
		dur time.Duration
	}
	results := make([]result, len(alive))
	sem := make(chan struct{}, p.d.Config.Pipeline.Parallel)
	var wg sync.WaitGroup
	for i, f := range alive {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = result{f, ctx.Err(), 0}
				return
			}
			defer func() { <-sem }()
			w := &prefixWriter{w: lw, prefix: "[" + f.Spec.Name + "] "}
			start := time.Now()
			err := safeStep(ctx, s.run, run, st, f, src, w)
			w.Flush()
			results[i] = result{f, err, time.Since(start)}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var malfunctions, verdicts []string
	for _, r := range results {
		ns := notify.Stage{Name: s.name, Status: "success", Duration: r.dur.Round(time.Millisecond)}
		switch {
		case r.err == nil:
		case errors.Is(r.err, pipelines.ErrStageFailed):
			ns.Status, ns.Error = "failure", strings.TrimPrefix(r.err.Error(), pipelines.ErrStageFailed.Error()+": ")
			r.f.FailedStage, r.f.Reason = s.name, ns.Error
			verdicts = append(verdicts, r.f.Spec.Name+": "+ns.Error)
			fmt.Fprintf(lw, "[%s] FAILED %s: %s\n", r.f.Spec.Name, s.name, ns.Error)
		default:
			malfunctions = append(malfunctions, r.f.Spec.Name+": "+r.err.Error())
			fmt.Fprintf(lw, "[%s] ERROR in %s: %v\n", r.f.Spec.Name, s.name, r.err)
		}
		r.f.Stages = append(r.f.Stages, ns)
	}
	if len(malfunctions) > 0 {
		// Retried as a whole: the steps that passed are idempotent.
		return nil, errors.New(strings.Join(malfunctions, "; "))
	}
	left := 0
	for _, f := range st.Functions {
		if f.alive() {
			left++
		}
	}
	if len(verdicts) > 0 && left == 0 {
		err := pipelines.Fail("%s", strings.Join(verdicts, "; "))
		p.finish(ctx, run, st, err, log)
		return nil, err
	}
	if len(verdicts) > 0 {
		fmt.Fprintf(log, "%d function(s) failed %s and stop here; %d go on\n", len(verdicts), s.name, left)
	}
	return st.outputs()
}

// safeStep turns a panicking step into a malfunction of that function.
func safeStep(ctx context.Context, step stepFunc, run pipelines.Run, st *state, f *fnState, src string, w io.Writer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return step(ctx, run, st, f, src, w)
}

// notifyStage reports the run and ends it: the run fails when any
// function failed.
type notifyStage struct{ p *Pipeline }

func (s *notifyStage) Name() string { return Notify }

func (s *notifyStage) Run(ctx context.Context, run pipelines.Run, log io.Writer) (map[string]string, error) {
	st, err := loadState(run)
	if err != nil {
		return nil, err
	}
	var failed []string
	for _, f := range st.Functions {
		if !f.alive() {
			failed = append(failed, fmt.Sprintf("%s failed %s: %s", f.Spec.Name, f.FailedStage, f.Reason))
		}
	}
	var verdict error
	if len(failed) > 0 {
		verdict = pipelines.Fail("%d of %d function(s) failed: %s", len(failed), len(st.Functions), strings.Join(failed, "; "))
	}
	out := s.p.finish(ctx, run, st, verdict, log)
	if verdict != nil {
		return nil, verdict
	}
	return out, nil
}

// finish sends the run's notification and drops its checkout. It runs in
// the last stage, or in the stage that failed the last function.
func (p *Pipeline) finish(ctx context.Context, run pipelines.Run, st *state, verdict error, log io.Writer) map[string]string {
	defer p.cleanup(run.ID)
	if st == nil {
		st = &state{}
	}
	if p.d.Notifier == nil {
		fmt.Fprintln(log, "notify: no notifier configured")
		return nil
	}
	v := notify.VerdictSuccess
	if verdict != nil {
		v = notify.VerdictFailure
	}
	nr := p.notifyRun(run, st, v)
	if len(nr.Functions) == 0 && verdict != nil {
		// The repository's config was refused: report it as one entry.
		nr.Functions = []notify.Function{{Name: "config", Verdict: notify.VerdictFailure, Reason: verdict.Error(),
			Stages: []notify.Stage{{Name: Checkout, Status: "failure", Error: verdict.Error()}}}}
	}
	// Notifications must go out even when the run was just cancelled
	// (a cancelled context would drop them); notify bounds each attempt.
	rep := p.d.Notifier.Notify(context.WithoutCancel(ctx), nr)
	writeDeliveries(log, rep)
	b, _ := json.Marshal(rep.Deliveries)
	return map[string]string{OutputNotifications: string(b)}
}

func (p *Pipeline) notifyRun(run pipelines.Run, st *state, v notify.Verdict) notify.Run {
	nr := notify.Run{ID: run.ID, Repo: run.Repo, Commit: run.Commit, Ref: run.Ref, Verdict: v}
	if p.d.RunURL != nil {
		nr.URL = p.d.RunURL(run.ID)
	}
	for _, f := range st.Functions {
		fv := v
		switch {
		case v == notify.VerdictPending:
		case !f.alive():
			fv = notify.VerdictFailure
		default:
			fv = notify.VerdictSuccess
		}
		nr.Functions = append(nr.Functions, notify.Function{Name: f.Spec.Name, Verdict: fv, Image: f.Image,
			Reason: reasonLine(f), Dockerfile: f.dockerfile(), Stages: f.Stages, Findings: f.Findings, Ignores: f.Ignores})
	}
	return nr
}

func reasonLine(f *fnState) string {
	if f.alive() {
		return ""
	}
	return f.FailedStage + ": " + f.Reason
}

func writeDeliveries(log io.Writer, rep notify.Report) {
	sort.SliceStable(rep.Deliveries, func(i, j int) bool { return rep.Deliveries[i].Target < rep.Deliveries[j].Target })
	for _, d := range rep.Deliveries {
		if d.OK {
			fmt.Fprintf(log, "notify %s: delivered (%d attempt(s))\n", d.Target, d.Attempts)
		} else {
			fmt.Fprintf(log, "notify %s: NOT delivered after %d attempt(s): %s\n", d.Target, d.Attempts, d.Error)
		}
	}
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
