package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-github/v60/github"

	"github.com/gantry-dev/gantry/config"
)

// GitHub's documented limits.
const (
	maxAnnotationsPerRequest = 50
	maxSummary               = 65535 // characters; bytes ≥ characters, so a byte cap is safe
	maxStatusDescription     = 140
	maxAnnotationMessage     = 64 << 10
	maxAnnotationTitle       = 255
	// maxAnnotations bounds the check run's requests (20 of them).
	maxAnnotations = 1000
)

type githubReporter struct {
	n     *Notifier
	cfg   config.NotifyGitHub
	base  *url.URL
	token string   // notify.github.tokenFile
	app   *appAuth // notify.github.appID
}

func newGitHubReporter(cfg config.Notify, n *Notifier) (*githubReporter, error) {
	g := cfg.GitHub
	if g.TokenFile == "" && g.AppID == 0 {
		return nil, nil
	}
	base, err := url.Parse(g.APIURL)
	if err != nil {
		return nil, fmt.Errorf("notify.github.apiURL: %w", err)
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	r := &githubReporter{n: n, cfg: g, base: base}
	if g.TokenFile != "" {
		t, err := readSecretFile("notify.github.tokenFile", g.TokenFile)
		if err != nil {
			return nil, err
		}
		r.token = string(t)
		return r, nil
	}
	pem, err := readSecretFile("notify.github.privateKeyFile", g.PrivateKeyFile)
	if err != nil {
		return nil, err
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(pem)
	if err != nil {
		return nil, fmt.Errorf("notify.github.privateKeyFile %s: not an RSA private key in PEM (download it from the App's settings): %v", g.PrivateKeyFile, err)
	}
	r.app = &appAuth{g: r, appID: g.AppID, installationID: g.InstallationID, key: key,
		tokens: map[int64]appToken{}, installs: map[string]int64{}}
	return r, nil
}

// newClient is go-github on Gantry's HTTP client, at the configured API root.
func (g *githubReporter) newClient(token string) *github.Client {
	c := github.NewClient(g.n.hc).WithAuthToken(token)
	c.BaseURL = g.base
	c.UserAgent = "gantry-notify"
	return c
}

func (g *githubReporter) client(ctx context.Context, owner, repo string) (*github.Client, error) {
	if g.app == nil {
		return g.newClient(g.token), nil
	}
	t, err := g.app.token(ctx, owner, repo)
	if err != nil {
		return nil, err
	}
	return g.newClient(t), nil
}

// report writes one commit status per function and, with a GitHub App and
// a finished run, the check run.
func (g *githubReporter) report(ctx context.Context, run Run) []Delivery {
	owner, repo, ok := strings.Cut(run.Repo, "/")
	if !ok || owner == "" || repo == "" || strings.Contains(repo, "/") {
		return []Delivery{{Target: "github", Error: fmt.Sprintf("repository %q is not owner/name", run.Repo)}}
	}
	var out []Delivery
	for _, f := range run.Functions {
		status := &github.RepoStatus{
			State:       github.String(statusState(f.Verdict)),
			Context:     github.String(g.cfg.StatusContext + "/" + f.Name),
			Description: github.String(truncate(f.reason(), maxStatusDescription)),
		}
		if run.URL != "" {
			status.TargetURL = github.String(run.URL)
		}
		out = append(out, g.n.deliver(ctx, "github-status/"+f.Name, func(ctx context.Context) error {
			c, err := g.client(ctx, owner, repo)
			if err != nil {
				return err
			}
			_, _, err = c.Repositories.CreateStatus(ctx, owner, repo, run.Commit, status)
			return classifyGitHub(err)
		}))
	}
	if g.app != nil && run.Verdict != VerdictPending {
		out = append(out, g.checkRun(ctx, owner, repo, run))
	}
	return out
}

func statusState(v Verdict) string {
	switch v {
	case VerdictSuccess:
		return "success"
	case VerdictFailure:
		return "failure"
	case VerdictPending:
		return "pending"
	}
	return "error" // error, cancelled, unknown
}

func checkConclusion(v Verdict) string {
	switch v {
	case VerdictSuccess:
		return "success"
	case VerdictCancelled:
		return "cancelled"
	}
	return "failure"
}

// checkRun creates the check run with the first 50 annotations and adds
// the rest 50 per update, as GitHub requires. Each request is retried on
// its own, so a retry never repeats an earlier batch.
func (g *githubReporter) checkRun(ctx context.Context, owner, repo string, run Run) Delivery {
	start := g.n.now()
	d := Delivery{Target: "github-check-run"}
	anns := annotations(run)
	title := checkTitle(run)
	summary := checkSummary(run)
	batches := [][]*github.CheckRunAnnotation{anns}
	if len(anns) > maxAnnotationsPerRequest {
		batches = nil
		for i := 0; i < len(anns); i += maxAnnotationsPerRequest {
			batches = append(batches, anns[i:min(i+maxAnnotationsPerRequest, len(anns))])
		}
	}
	now := github.Timestamp{Time: g.n.now()}
	conclusion := checkConclusion(run.Verdict)
	var id int64
	fail := func(err error) Delivery {
		d.Error, d.Duration = err.Error(), g.n.now().Sub(start)
		return d
	}
	for i, batch := range batches {
		last := i == len(batches)-1
		output := &github.CheckRunOutput{Title: github.String(title), Summary: github.String(summary), Annotations: batch}
		tries, err := g.n.retry(ctx, func(ctx context.Context) error {
			c, err := g.client(ctx, owner, repo)
			if err != nil {
				return err
			}
			if i == 0 {
				opts := github.CreateCheckRunOptions{Name: g.cfg.CheckRunName, HeadSHA: run.Commit, Output: output, Status: github.String("in_progress")}
				if run.ID != "" {
					opts.ExternalID = github.String(run.ID)
				}
				if run.URL != "" {
					opts.DetailsURL = github.String(run.URL)
				}
				if last {
					opts.Status, opts.Conclusion, opts.CompletedAt = github.String("completed"), github.String(conclusion), &now
				}
				cr, _, err := c.Checks.CreateCheckRun(ctx, owner, repo, opts)
				if err != nil {
					return classifyGitHub(err)
				}
				if id = cr.GetID(); id == 0 {
					return permanent(errors.New("GitHub returned a check run without an id"))
				}
				return nil
			}
			opts := github.UpdateCheckRunOptions{Name: g.cfg.CheckRunName, Output: output}
			if last {
				opts.Status, opts.Conclusion, opts.CompletedAt = github.String("completed"), github.String(conclusion), &now
			}
			_, _, err = c.Checks.UpdateCheckRun(ctx, owner, repo, id, opts)
			return classifyGitHub(err)
		})
		d.Attempts += tries
		if err != nil {
			return fail(fmt.Errorf("request %d of %d: %w", i+1, len(batches), err))
		}
	}
	d.OK, d.Duration = true, g.n.now().Sub(start)
	return d
}

func checkTitle(run Run) string {
	passed := 0
	for _, f := range run.Functions {
		if f.Verdict == VerdictSuccess {
			passed++
		}
	}
	n := 0
	for _, f := range run.Functions {
		n += len(f.Findings)
	}
	t := fmt.Sprintf("%d of %d functions passed", passed, len(run.Functions))
	if n > 0 {
		t += fmt.Sprintf("; %d findings", n)
	}
	return t
}

// annotations are the findings, worst first, pointing at each function's
// Dockerfile (line 1: an image finding has no better line).
func annotations(run Run) []*github.CheckRunAnnotation {
	var out []*github.CheckRunAnnotation
	for _, nf := range topFindings(run.Functions, maxAnnotations) {
		path := "Dockerfile"
		for _, f := range run.Functions {
			if f.Name == nf.Function && f.Dockerfile != "" {
				path = f.Dockerfile
			}
		}
		level := "warning"
		if r := severityRank(nf.Severity); r <= 1 {
			level = "failure"
		} else if r >= 3 {
			level = "notice"
		}
		fix := "no fixed version released yet"
		if nf.Fixed != "" {
			fix = "fixed in " + nf.Fixed + ": upgrade " + nf.Package
		}
		msg := fmt.Sprintf("%s %s in %s %s (function %s); %s.", nf.Severity, nf.ID, nf.Package, nf.Installed, nf.Function, fix)
		if nf.Title != "" {
			msg += "\n" + nf.Title
		}
		out = append(out, &github.CheckRunAnnotation{
			Path:            github.String(path),
			StartLine:       github.Int(1),
			EndLine:         github.Int(1),
			AnnotationLevel: github.String(level),
			Title:           github.String(truncate(nf.Severity+" "+nf.ID+" in "+nf.Package, maxAnnotationTitle)),
			Message:         github.String(truncate(msg, maxAnnotationMessage)),
		})
	}
	return out
}

// checkSummary renders the run in Markdown within GitHub's 65535
// character cap: rows that do not fit are counted, not cut mid-row.
func checkSummary(run Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**: run ", run.Verdict)
	if run.URL != "" {
		fmt.Fprintf(&b, "[%s](%s)", mdCell(run.ID), run.URL)
	} else {
		b.WriteString(mdCell(run.ID))
	}
	fmt.Fprintf(&b, " of `%s` at `%s`", mdCell(run.Repo), mdCell(shortSHA(run.Commit)))
	if run.Ref != "" {
		fmt.Fprintf(&b, " (%s)", mdCell(run.Ref))
	}
	b.WriteString("\n\n| function | verdict | stages | detail |\n| --- | --- | --- | --- |\n")

	const reserve = 512 // for the "not shown" line and the link to the run
	var rows []string
	for _, f := range run.Functions {
		var stages []string
		for _, s := range f.Stages {
			stages = append(stages, fmt.Sprintf("%s %s (%s)", s.Name, s.Status, s.Duration.Round(time.Millisecond)))
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |\n", mdCell(f.Name), mdCell(string(f.Verdict)),
			mdCell(strings.Join(stages, ", ")), mdCell(truncate(f.reason(), 1000))))
	}
	findings := topFindings(run.Functions, 1<<30)
	skipped := 0
	write := func(row string) {
		if b.Len()+len(row)+reserve > maxSummary {
			skipped++
			return
		}
		b.WriteString(row)
	}
	for _, r := range rows {
		write(r)
	}
	if len(findings) > 0 {
		write(fmt.Sprintf("\n### Findings (%d)\n\n| severity | id | package | installed | fixed | function | title |\n| --- | --- | --- | --- | --- | --- | --- |\n", len(findings)))
		for _, f := range findings {
			fixed := f.Fixed
			if fixed == "" {
				fixed = "none yet"
			}
			write(fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |\n", mdCell(f.Severity), mdCell(f.ID), mdCell(f.Package),
				mdCell(f.Installed), mdCell(fixed), mdCell(f.Function), mdCell(truncate(f.Title, 300))))
		}
	}
	for _, r := range mdIgnores(run.Functions) {
		write(r)
	}
	if skipped > 0 {
		fmt.Fprintf(&b, "\n%d more rows do not fit GitHub's summary limit", skipped)
		if run.URL != "" {
			fmt.Fprintf(&b, "; the full report is at %s", run.URL)
		}
		b.WriteString(".\n")
	}
	return truncate(b.String(), maxSummary)
}

// mdCell keeps a value inside one Markdown table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\r", " ", "\n", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// classifyGitHub maps go-github's errors to retry decisions: rate limits
// and 5xx are retried (after GitHub's Retry-After, within the cap), other
// 4xx are not. Messages name the request and GitHub's answer, never the
// token.
func classifyGitHub(err error) error {
	if err == nil {
		return nil
	}
	var arl *github.AbuseRateLimitError
	if errors.As(err, &arl) {
		se := &statusError{target: "GitHub", code: http.StatusTooManyRequests, body: "secondary rate limit: " + arl.Message}
		if arl.RetryAfter != nil {
			se.retryAfter = *arl.RetryAfter
		}
		return se
	}
	var rl *github.RateLimitError
	if errors.As(err, &rl) {
		return &statusError{target: "GitHub", code: http.StatusTooManyRequests,
			retryAfter: time.Until(rl.Rate.Reset.Time), body: "rate limit: " + rl.Message}
	}
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		target := "GitHub"
		if er.Response.Request != nil {
			target = "GitHub " + er.Response.Request.Method + " " + er.Response.Request.URL.Path
		}
		msg := er.Message
		for _, e := range er.Errors {
			msg += "; " + e.Error()
		}
		return &statusError{target: target, code: er.Response.StatusCode,
			retryAfter: parseRetryAfter(er.Response.Header.Get("Retry-After"), time.Now()), body: oneLine(msg)}
	}
	return fmt.Errorf("GitHub: %v", redactURLError(err))
}
