// Package notify reports run results: a GitHub commit status per function
// and an overall check run with the findings as annotations (go-github,
// token or GitHub App auth), a Slack-compatible incoming webhook, and
// CloudEvents over HTTP signed with HMAC-SHA256. Each delivery is retried
// with backoff under a per-attempt timeout; a failed delivery is returned
// in the Report for the run record, never as an error that fails the run.
package notify

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/files"
)

// Verdict is the outcome of a run or of one function.
type Verdict string

// Verdicts. Failure is a policy verdict (lint, scan gate, signature,
// admission); Error is a malfunction (a daemon down, a timeout).
const (
	VerdictPending   Verdict = "pending"
	VerdictSuccess   Verdict = "success"
	VerdictFailure   Verdict = "failure"
	VerdictError     Verdict = "error"
	VerdictCancelled Verdict = "cancelled"
)

// failed reports whether v counts as a failure for notify.when: failure.
func (v Verdict) failed() bool { return v == VerdictFailure || v == VerdictError }

// Run is what the pipeline reports once a run ends (or starts, with
// VerdictPending: only commit statuses are then written).
type Run struct {
	ID      string  `json:"id"`
	Repo    string  `json:"repo"`   // owner/name
	Commit  string  `json:"commit"` // full SHA
	Ref     string  `json:"ref,omitempty"`
	URL     string  `json:"url,omitempty"` // link to the run (dashboard or API)
	Verdict Verdict `json:"verdict"`
	// Functions are reported one commit status each.
	Functions []Function `json:"functions"`
}

// Function is one function's result.
type Function struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// Image is the built image by digest, when the build got that far.
	Image string `json:"image,omitempty"`
	// Reason says in one line why the function failed (e.g. "scan: 2
	// findings fail the gate"); empty lets notify derive it from Stages.
	Reason string `json:"reason,omitempty"`
	// Dockerfile is the function's Dockerfile path in the repository:
	// check run annotations point at it.
	Dockerfile string    `json:"dockerfile,omitempty"`
	Stages     []Stage   `json:"stages,omitempty"`
	Findings   []Finding `json:"findings,omitempty"`
	// Ignores are the ignore entries the scan gate used for this function.
	Ignores []Ignore `json:"ignores,omitempty"`
}

// Stage is one stage's result.
type Stage struct {
	Name     string        `json:"name"`   // lint, build, scan, sign, deploy
	Status   string        `json:"status"` // success, failure, error, skipped, cancelled
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
}

// Finding is a vulnerability (or other finding) that failed the gate.
type Finding struct {
	ID        string `json:"id"` // CVE-2024-1234
	Package   string `json:"package"`
	Installed string `json:"installed"`
	Fixed     string `json:"fixed,omitempty"` // empty: no fix released
	Severity  string `json:"severity"`        // CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN
	Title     string `json:"title,omitempty"`
}

// Delivery is the outcome of one notification.
type Delivery struct {
	// Target is github-status/<function>, github-check-run, slack or
	// cloudevents.
	Target   string        `json:"target"`
	OK       bool          `json:"ok"`
	Attempts int           `json:"attempts"`
	Duration time.Duration `json:"duration"`
	// Error says what failed, without secrets (no token, no webhook URL).
	Error string `json:"error,omitempty"`
}

// Report lists every delivery attempted for a run.
type Report struct {
	Deliveries []Delivery `json:"deliveries"`
}

// Failed returns the deliveries that did not succeed.
func (r Report) Failed() []Delivery {
	var out []Delivery
	for _, d := range r.Deliveries {
		if !d.OK {
			out = append(out, d)
		}
	}
	return out
}

// Notifier sends run results to the configured targets. It is safe for
// concurrent use.
type Notifier struct {
	cfg    config.Notify
	hc     *http.Client
	github *githubReporter
	slack  string // incoming-webhook URL (a secret)
	ceKey  []byte // HMAC key (a secret)
	ceURL  string
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	jitter func(time.Duration) time.Duration
}

// Option adjusts a Notifier.
type Option func(*Notifier)

// WithHTTPClient sets the HTTP client (its Transport is wrapped to bound
// response bodies). The default has no overall timeout: each attempt is
// bounded by notify.timeout through its context.
func WithHTTPClient(c *http.Client) Option { return func(n *Notifier) { n.hc = c } }

// maxSecretFile bounds secret files (a key or URL is small).
const maxSecretFile = 64 << 10

// New reads the secret files the configuration names and builds a
// Notifier. Targets without configuration are off. An unreadable or
// malformed secret file is an error here, at start, rather than a failed
// delivery on every run.
func New(cfg config.Notify, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	n := &Notifier{cfg: cfg, hc: &http.Client{}, now: time.Now, sleep: sleepCtx, jitter: fullJitter}
	for _, o := range opts {
		o(n)
	}
	hc := *n.hc
	hc.Transport = boundedTransport{next: transportOrDefault(hc.Transport)}
	hc.CheckRedirect = noRedirects
	n.hc = &hc

	if f := cfg.Slack.WebhookURLFile; f != "" {
		u, err := readSecretFile("notify.slack.webhookURLFile", f)
		if err != nil {
			return nil, err
		}
		if err := checkURL(string(u)); err != nil {
			return nil, fmt.Errorf("notify.slack.webhookURLFile %s: %w", f, err)
		}
		n.slack = string(u)
	}
	if cfg.CloudEvents.URL != "" {
		key, err := readSecretFile("notify.cloudEvents.secretFile", cfg.CloudEvents.SecretFile)
		if err != nil {
			return nil, err
		}
		if len(key) < 16 {
			return nil, fmt.Errorf("notify.cloudEvents.secretFile %s: the HMAC key must be at least 16 bytes (e.g. openssl rand -hex 32)", cfg.CloudEvents.SecretFile)
		}
		n.ceKey, n.ceURL = key, cfg.CloudEvents.URL
	}
	gh, err := newGitHubReporter(cfg, n)
	if err != nil {
		return nil, err
	}
	n.github = gh
	return n, nil
}

// readSecretFile reads a small secret, trimmed of surrounding white space.
// Errors name the key and file, never the content.
func readSecretFile(key, path string) ([]byte, error) {
	b, err := files.ReadSecret(path, maxSecretFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return b, nil
}

// Notify delivers run to every configured target, concurrently, and
// returns what happened. It never fails the run: check Report.Failed.
func (n *Notifier) Notify(ctx context.Context, run Run) Report {
	var (
		mu  sync.Mutex
		rep Report
		wg  sync.WaitGroup
	)
	add := func(ds ...Delivery) {
		mu.Lock()
		rep.Deliveries = append(rep.Deliveries, ds...)
		mu.Unlock()
	}
	if n.github != nil && run.Repo != "" && run.Commit != "" {
		wg.Go(func() { add(n.github.report(ctx, run)...) })
	}
	if n.chatWanted(run.Verdict) {
		if n.slack != "" {
			wg.Go(func() { add(n.deliver(ctx, "slack", func(ctx context.Context) error { return n.postSlack(ctx, run) })) })
		}
		if n.ceURL != "" {
			wg.Go(func() {
				add(n.deliver(ctx, "cloudevents", func(ctx context.Context) error { return n.postCloudEvent(ctx, run) }))
			})
		}
	}
	wg.Wait()
	sort.SliceStable(rep.Deliveries, func(i, j int) bool { return rep.Deliveries[i].Target < rep.Deliveries[j].Target })
	return rep
}

// chatWanted applies notify.when to the Slack and CloudEvents targets.
func (n *Notifier) chatWanted(v Verdict) bool {
	switch v {
	case VerdictPending:
		return false
	case VerdictCancelled:
		// A run cancelled by a newer push is not news; the newer run reports.
		return n.cfg.When == "always"
	}
	return n.cfg.When == "always" || v.failed()
}

// deliver runs one delivery with retries and records its outcome.
func (n *Notifier) deliver(ctx context.Context, target string, attempt func(context.Context) error) Delivery {
	start := n.now()
	tries, err := n.retry(ctx, attempt)
	d := Delivery{Target: target, OK: err == nil, Attempts: tries, Duration: n.now().Sub(start)}
	if err != nil {
		d.Error = err.Error()
	}
	return d
}

// topFindings returns the n worst findings, worst first (severity, then
// fixable first, then id), across the given functions.
func topFindings(fns []Function, n int) []namedFinding {
	var all []namedFinding
	for _, f := range fns {
		for _, x := range f.Findings {
			all = append(all, namedFinding{Function: f.Name, Finding: x})
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if ra, rb := severityRank(a.Severity), severityRank(b.Severity); ra != rb {
			return ra < rb
		}
		if (a.Fixed != "") != (b.Fixed != "") {
			return a.Fixed != ""
		}
		return a.ID < b.ID
	})
	if len(all) > n {
		all = all[:n]
	}
	return all
}

type namedFinding struct {
	Function string `json:"function"`
	Finding
}

func severityRank(s string) int {
	switch strings.ToUpper(s) {
	case "CRITICAL":
		return 0
	case "HIGH":
		return 1
	case "MEDIUM":
		return 2
	case "LOW":
		return 3
	}
	return 4
}

// reason is the one-line why of a function's verdict.
func (f Function) reason() string {
	if f.Reason != "" {
		return f.Reason
	}
	for _, s := range f.Stages {
		if s.Status == "failure" || s.Status == "error" {
			if s.Error != "" {
				return s.Name + ": " + s.Error
			}
			return s.Name + " " + s.Status
		}
	}
	switch f.Verdict {
	case VerdictSuccess:
		if f.Image != "" {
			return "deployed " + f.Image
		}
		return "passed"
	case VerdictPending:
		return "running"
	}
	return string(f.Verdict)
}

// truncate cuts s to at most max bytes on a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = "…"
	cut := max - len(mark)
	if cut < 0 {
		return ""
	}
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
