package stages

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/builder"
	"github.com/gantry-dev/gantry/builder/lint"
	"github.com/gantry-dev/gantry/deploy"
	"github.com/gantry-dev/gantry/internal/codescanning"
	"github.com/gantry-dev/gantry/internal/files"
	"github.com/gantry-dev/gantry/notify"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/scanner"
	"github.com/gantry-dev/gantry/scanner/gate"
	"github.com/gantry-dev/gantry/scanner/report"
	"github.com/gantry-dev/gantry/signer"
)

// maxFindings bounds the findings kept on the run record per function (the
// full report is in the scan stage's log).
const maxFindings = 20

func (p *Pipeline) lint(ctx context.Context, run pipelines.Run, st *state, f *fnState, src string, log io.Writer) error {
	c := p.d.Config.Lint
	threshold, err := lint.ParseSeverity(c.FailOn)
	if err != nil {
		return fmt.Errorf("lint.failOn: %w", err)
	}
	if o := st.Overrides.Lint.FailOn; o != "" {
		// A repository may only make the threshold stricter (lower).
		if rs, err := lint.ParseSeverity(o); err == nil && rs < threshold {
			threshold = rs
		}
	}
	rel := f.dockerfile()
	data, err := files.ReadBounded(filepath.Join(src, filepath.FromSlash(rel)), 1<<20)
	if err != nil {
		return pipelines.Fail("Dockerfile %s: %v", rel, err)
	}
	opts := lint.Options{Hadolint: c.Hadolint, Severity: c.Severity, BuildArgs: f.Spec.BuildArgs, Target: f.Spec.Target}
	for _, ig := range c.Ignore {
		opts.Ignores = append(opts.Ignores, lint.Ignore{Rule: ig.Rule, Reason: ig.Reason, File: ig.File})
	}
	rep, err := lint.Lint(ctx, []lint.File{{Path: rel, Data: data}}, opts)
	var perr *lint.ParseError
	if errors.As(err, &perr) {
		return pipelines.Fail("%v", err)
	}
	if err != nil {
		return err
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(log, "note:", n)
	}
	if err := lint.WriteTable(log, rep); err != nil {
		return err
	}
	var sarif bytes.Buffer
	if err := lint.WriteSARIF(&sarif, rep); err != nil {
		return err
	}
	ghSARIF, err := codescanning.Prepare(sarif.Bytes(), codescanning.Options{Category: SARIFCategory(Lint, f.Spec.Name)})
	if err != nil {
		return err
	}
	p.report(run, f, "lint.sarif", ghSARIF, log)
	if rep.Fails(threshold) {
		return pipelines.Fail("findings at or above %s in %s (%d error(s), %d warning(s))", threshold, rel,
			rep.Count(lint.Error), rep.Count(lint.Warning))
	}
	return nil
}

func (p *Pipeline) build(ctx context.Context, run pipelines.Run, st *state, f *fnState, src string, log io.Writer) error {
	var rnd [2]byte
	_, _ = rand.Read(rnd[:])
	// A fresh BuildKit id per attempt: a retried build must not collide
	// with the history record of the attempt that died.
	id := run.ID + "-" + hex.EncodeToString(rnd[:]) + "-" + f.Spec.Name
	if len(id) > 64 {
		id = id[:64]
	}
	req := builder.Request{Root: src, ContextDir: filepath.Join(src, filepath.FromSlash(f.Spec.Context)),
		Dockerfile: f.Spec.Dockerfile, Target: f.Spec.Target, BuildArgs: f.Spec.BuildArgs,
		Image: f.Spec.Image, Push: true, ID: strings.TrimRight(id, "-_")}
	start := p.d.Now().UTC()
	res, err := p.d.Builder.Build(ctx, req, builder.Progress{Out: log, Mode: "plain"})
	if err != nil {
		if builder.IsBuildFailure(err) {
			return pipelines.Fail("%v", err)
		}
		return err
	}
	f.Image, f.BuildStarted, f.BuildFinished = res.Ref, start, p.d.Now().UTC()
	fmt.Fprintf(log, "pushed %s (%s)\n", res.Ref, res.Duration.Round(time.Millisecond))
	return nil
}

func (p *Pipeline) gatePolicy(st *state) (gate.Policy, error) {
	c := p.d.Config.Scanner
	pol := gate.Policy{Severities: slices.Clone(c.Severities), OnlyFixed: c.OnlyFixed}
	if len(pol.Severities) == 0 {
		pol.Severities = slices.Clone(gate.DefaultSeverities)
	}
	o := st.Overrides.Scan
	for _, s := range o.Severities {
		if !slices.Contains(pol.Severities, strings.ToUpper(s)) {
			pol.Severities = append(pol.Severities, strings.ToUpper(s))
		}
	}
	if o.IncludeUnfixable {
		pol.OnlyFixed = false
	}
	if c.IgnoreFile != "" {
		ig, err := gate.LoadIgnoreFile(c.IgnoreFile)
		if err != nil {
			return pol, err
		}
		for i := range ig {
			ig[i].Source = "server (scanner.ignoreFile)"
		}
		pol.Ignores = append(pol.Ignores, ig...)
	}
	if len(st.RepoIgnores) > 0 {
		ig, err := gate.ParseIgnores(st.RepoIgnores)
		if err != nil {
			return pol, pipelines.Fail("repository scan ignore file %s: %v", o.IgnoreFile, err)
		}
		// The repository is a tenant: how far its own waivers may go is
		// the server's policy (scanner.repoIgnores).
		ri := c.RepoIgnores
		rp := gate.RepoPolicy{Allowed: ri.Allowed, MaxExpiryDays: ri.MaxExpiryDays, AllowPackageWildcards: ri.AllowPackageWildcards}
		if err := rp.CheckRepoIgnores(o.IgnoreFile, ig, p.d.Now()); err != nil {
			return pol, pipelines.Fail("repository scan ignore file refused: %v", err)
		}
		for i := range ig {
			ig[i].Source = "repository (" + o.IgnoreFile + ")"
		}
		pol.Ignores = append(pol.Ignores, ig...)
	}
	return pol, nil
}

func (p *Pipeline) scan(ctx context.Context, run pipelines.Run, st *state, f *fnState, _ string, log io.Writer) error {
	pol, err := p.gatePolicy(st)
	if err != nil {
		return err
	}
	art, res, v, err := p.scanImage(ctx, run, f, pol)
	if err != nil {
		return err
	}
	if err := report.WriteTable(log, res.Report, v); err != nil {
		return err
	}
	var js, sarif bytes.Buffer
	if err := report.WriteJSON(&js, res.Report, v); err != nil {
		return err
	}
	if err := report.WriteSARIF(&sarif, res.Report, v, scanner.TrivyVersion()); err != nil {
		return err
	}
	// The findings are in the image: code scanning shows them at the
	// function's Dockerfile, the file that chose what the image holds.
	ghSARIF, err := codescanning.Prepare(sarif.Bytes(), codescanning.Options{Category: SARIFCategory(Scan, f.Spec.Name), Anchor: f.dockerfile()})
	if err != nil {
		return err
	}
	p.report(run, f, "scan.json", js.Bytes(), log)
	p.report(run, f, "scan.sarif", ghSARIF, log)
	p.report(run, f, "sbom.cdx.json", art.sbom, log)
	p.report(run, f, "scan.md", []byte(report.Markdown(res.Report, v, report.DefaultMarkdownLimit)), nil)
	// Every waiver is on the record: the stage log, the run's state (and
	// so the notification) and the vuln attestation.
	f.Ignores = f.Ignores[:0]
	for _, u := range report.UsedIgnores(res.Report, v) {
		fmt.Fprintf(log, "ignore used: %s\n", u)
		f.Ignores = append(f.Ignores, notify.Ignore{ID: u.ID, Package: u.Package, Reason: u.Reason, Expires: u.Expires,
			Source: u.Source, Line: u.Line, Findings: u.Findings})
	}
	if !v.Pass {
		f.Findings = failingFindings(res.Report, v)
		return pipelines.Fail("scan gate: %s", v.Summary)
	}
	return nil
}

// scanImage scans f's image and keeps the attestation predicates for the
// sign stage.
func (p *Pipeline) scanImage(ctx context.Context, run pipelines.Run, f *fnState, pol gate.Policy) (*scanArtifacts, *scanner.Result, *report.Verdict, error) {
	if f.Image == "" {
		return nil, nil, nil, errors.New("no image: the build stage did not record one")
	}
	started := p.d.Now().UTC()
	res, err := p.d.Scanner.Scan(ctx, f.Image)
	if err != nil {
		return nil, nil, nil, err
	}
	finished := p.d.Now().UTC()
	v := gate.Evaluate(res.Report, pol)
	vuln, err := p.vulnPredicate(run, res, v, started, finished)
	if err != nil {
		return nil, nil, nil, err
	}
	var sbom bytes.Buffer
	if err := res.WriteCycloneDX(ctx, &sbom); err != nil {
		return nil, nil, nil, fmt.Errorf("SBOM: %w", err)
	}
	art := &scanArtifacts{vuln: vuln, sbom: sbom.Bytes()}
	p.mu.Lock()
	p.scans[run.ID+"/"+f.Spec.Name] = art
	p.mu.Unlock()
	return art, res, v, nil
}

// vulnParameters is what Gantry records as the vuln attestation's
// invocation.parameters: the gate it ran and every ignore it used, so that
// an admission policy (or a person) can see what was waived and by whom.
type vulnParameters struct {
	Gate    vulnGate           `json:"gate"`
	Ignores []report.IgnoreUse `json:"ignores"`
}

type vulnGate struct {
	Severities []string `json:"severities"`
	OnlyFixed  bool     `json:"onlyFixed"`
	Pass       bool     `json:"pass"`
	Summary    string   `json:"summary"`
}

// vulnPredicate is the cosign vuln/v1 predicate of one scan: Trivy's report
// (ignored findings moved aside, as Trivy does) and the gate's record.
func (p *Pipeline) vulnPredicate(run pipelines.Run, res *scanner.Result, v *report.Verdict, started, finished time.Time) ([]byte, error) {
	tr, err := res.TrivyReport(v)
	if err != nil {
		return nil, err
	}
	params := vulnParameters{Gate: vulnGate{Severities: v.Policy.Severities, OnlyFixed: v.Policy.OnlyFixed, Pass: v.Pass, Summary: v.Summary},
		Ignores: report.UsedIgnores(res.Report, v)}
	if params.Ignores == nil {
		params.Ignores = []report.IgnoreUse{}
	}
	scan := signer.VulnScan{Report: tr, ScannerVersion: res.Report.Scanner.Version, DBURI: res.Report.DB.Repository,
		Started: started, Finished: finished, EventID: run.ID, BuilderID: p.d.Config.Pipeline.BuilderID, Parameters: params}
	if !res.Report.DB.UpdatedAt.IsZero() {
		scan.DBVersion = res.Report.DB.UpdatedAt.UTC().Format(time.RFC3339)
	}
	if p.d.RunURL != nil {
		scan.InvocationURI = p.d.RunURL(run.ID)
	}
	return signer.VulnPredicate(scan)
}

func failingFindings(r *report.Report, v *report.Verdict) []notify.Finding {
	var out []notify.Finding
	for i, fd := range r.Findings {
		if i >= len(v.Decisions) || v.Decisions[i].Outcome != report.Fail {
			continue
		}
		out = append(out, notify.Finding{ID: fd.ID, Package: fd.Package, Installed: fd.InstalledVersion,
			Fixed: fd.FixedVersion, Severity: fd.Severity, Title: fd.Title})
	}
	sort.SliceStable(out, func(i, j int) bool {
		return report.SeverityRank(out[i].Severity) > report.SeverityRank(out[j].Severity)
	})
	if len(out) > maxFindings {
		out = out[:maxFindings]
	}
	return out
}

func (p *Pipeline) sign(ctx context.Context, run pipelines.Run, st *state, f *fnState, _ string, log io.Writer) error {
	if p.d.Signer == nil {
		fmt.Fprintln(log, "signing disabled (signer.keySource: none, or --sign=false): image left unsigned; admission will refuse it")
		return nil
	}
	d, err := p.d.ResolveDigest(ctx, f.Image)
	if err != nil {
		return err
	}
	sres, err := p.d.Signer.Sign(ctx, d)
	if err != nil {
		return err
	}
	if sres.AlreadySigned {
		fmt.Fprintf(log, "%s already signed by this key (%s)\n", d, sres.Tag)
	} else {
		fmt.Fprintf(log, "signed %s (%s)\n", d, sres.Tag)
	}
	p.mu.Lock()
	art := p.scans[run.ID+"/"+f.Spec.Name]
	p.mu.Unlock()
	if art == nil {
		// Resumed elsewhere: the scan's predicates are not in this
		// worker's memory. Scan again (the digest is the same).
		fmt.Fprintln(log, "scan results not on this worker: scanning the image again for its attestations")
		pol, err := p.gatePolicy(st)
		if err != nil {
			return err
		}
		if art, _, _, err = p.scanImage(ctx, run, f, pol); err != nil {
			return err
		}
	}
	prov, err := signer.Provenance{Repository: run.CloneURL, Commit: run.Commit, Ref: run.Ref, DeliveryID: run.DeliveryID,
		BuilderID: p.d.Config.Pipeline.BuilderID, RunID: run.ID, Started: f.BuildStarted, Finished: f.BuildFinished}.Predicate()
	if err != nil {
		return err
	}
	for _, a := range []struct {
		typ  string
		pred []byte
	}{{"slsaprovenance1", prov}, {"vuln", art.vuln}, {"cyclonedx", art.sbom}} {
		ares, err := p.d.Signer.Attest(ctx, d, a.typ, a.pred)
		if err != nil {
			return fmt.Errorf("attest %s: %w", a.typ, err)
		}
		if ares.AlreadyAttested {
			fmt.Fprintf(log, "attestation %s already present (%s)\n", a.typ, ares.Tag)
		} else {
			fmt.Fprintf(log, "attested %s (%s)\n", ares.PredicateType, ares.Tag)
		}
	}
	return nil
}

func (p *Pipeline) deploy(ctx context.Context, run pipelines.Run, st *state, f *fnState, _ string, log io.Writer) error {
	if p.d.Deployer == nil || !p.d.Config.Pipeline.Deploy {
		fmt.Fprintln(log, "deploy disabled (pipeline.deploy: false, or --no-deploy): not deployed")
		return nil
	}
	r := f.Spec.Resources
	fn := deploy.Function{Name: f.Spec.Name, Image: f.Image, Env: f.Spec.Env, SecretRefs: f.Spec.Secrets,
		Resources: deploy.Resources{CPURequest: r.Requests["cpu"], MemoryRequest: r.Requests["memory"],
			CPULimit: r.Limits["cpu"], MemoryLimit: r.Limits["memory"]},
		Scale:  deploy.Scale{Min: int32(f.Spec.Scale.Min), Max: int32(f.Spec.Scale.Max)},
		Labels: deploy.RunLabels{RunID: run.ID, Repo: run.Repo, Commit: run.Commit, Ref: run.Ref}}
	if err := p.tenantPolicy(run, &fn); err != nil {
		return err
	}
	if err := p.checkFastForward(ctx, run, f, &fn, log); err != nil {
		return err
	}
	res, err := p.d.Deployer.Apply(ctx, fn)
	if res != nil {
		f.Deployed = f.Deployed[:0]
		for _, o := range res.Objects {
			fmt.Fprintf(log, "%s %s/%s applied (generation %d)\n", o.Kind, o.Namespace, o.Name, o.Generation)
			f.Deployed = append(f.Deployed, o.Kind+" "+o.Namespace+"/"+o.Name)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(log, "warning from the API server: %s\n", w)
		}
	}
	switch {
	case err == nil:
		return nil
	case deploy.IsAdmissionDenied(err), errors.Is(err, deploy.ErrInvalid), errors.Is(err, deploy.ErrNotOwner):
		return pipelines.Fail("%v", err)
	default:
		var re *deploy.RolloutError
		if errors.As(err, &re) {
			return pipelines.Fail("%v", err)
		}
		return err
	}
}

// SARIFCategory is the code-scanning category of a stage's SARIF for one
// function ("gantry/scan/hello/"): one per file, as GitHub requires.
func SARIFCategory(stage, function string) string {
	return "gantry/" + stage + "/" + function + "/"
}

// report stores a report: in the stage log (so it lives with the run) and
// with the sink, if any. A nil log keeps it out of the log.
func (p *Pipeline) report(run pipelines.Run, f *fnState, name string, body []byte, log io.Writer) {
	if log != nil && p.d.LogReports {
		fmt.Fprintf(log, "--- report %s (%d bytes) ---\n", name, len(body))
		_, _ = log.Write(body)
		if len(body) > 0 && body[len(body)-1] != '\n' {
			fmt.Fprintln(log)
		}
		fmt.Fprintf(log, "--- end of report %s ---\n", name)
	}
	if p.d.Reports != nil {
		p.d.Reports(run, f.Spec.Name, name, body)
	}
}
