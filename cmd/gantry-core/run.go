//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-git/go-git/v5"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/pipelines/repoconfig"
	"github.com/gantry-dev/gantry/pipelines/source"
	pstages "github.com/gantry-dev/gantry/pipelines/stages"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "run [DIR | --repo URL --commit SHA]",
			Short: "Run the whole pipeline once, without a server: checkout, lint, build, scan, sign, deploy, notify",
			Long: `run executes the pipeline of gantry serve once, in this process, for one commit:
the committed HEAD of the git repository at DIR (default .; uncommitted changes
are not built), or --commit of --repo. Progress streams to stderr; the result
goes to stdout. Exit 0 every function passed, 1 a policy failure (lint
threshold, scan gate, admission denial), 2 any other error.

The repository's gantry.yaml (or stack.yml) names the functions. A repository
without one is built as one function with --image REPO [--context DIR]
[--dockerfile FILE] [--function NAME]; in a repository whose file has one
function, these flags replace its fields; with several functions they are an
error. Paths are relative to the repository root. The stages use the
configuration's builder, lint, scanner, signer, deploy and notify sections.
See docs/pipeline.md.`,
			Args: cobra.MaximumNArgs(1),
		}
		fl := cmd.Flags()
		repoURL := fl.String("repo", "", "clone URL of the repository (with --commit), instead of DIR")
		commit := fl.String("commit", "", "commit SHA to run (default: HEAD of DIR)")
		ref := fl.String("ref", "", "git ref the commit was pushed to, for the record and provenance (default: DIR's branch)")
		repoName := fl.String("name", "", "repository as owner/name, for statuses and labels (default $GITHUB_REPOSITORY, else DIR's name)")
		delivery := fl.String("delivery-id", "", "id recorded as the trigger in the provenance (default $GITHUB_RUN_ID, else local)")
		sarifDir := fl.String("sarif-dir", "", "write lint-FUNCTION.sarif and scan-FUNCTION.sarif here (GitHub code scanning)")
		reportDir := fl.String("report-dir", "", "write every report here: lint SARIF, scan JSON/SARIF/markdown, CycloneDX SBOM")
		summaryFile := fl.String("summary-file", "", "append a markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)")
		noDeploy := fl.Bool("no-deploy", false, "stop after signing (pipeline.deploy: false)")
		sign := fl.Bool("sign", true, "sign and attest the images (--sign=false skips it; admission then refuses them)")
		var ovr repoconfig.Override
		fl.StringVar(&ovr.Image, "image", "", "image repository to push to: the one function of a repository without gantry.yaml/stack.yml, or replaces the image of a one-function file")
		fl.StringVar(&ovr.Dockerfile, "dockerfile", "", "Dockerfile, relative to the context (default Dockerfile); like --image")
		fl.StringVar(&ovr.Context, "context", "", "build context, relative to the repository root (default .); like --image")
		fl.StringVar(&ovr.Function, "function", "", "function name with --image and no gantry.yaml (default: the image's last path element); with a file, its function's name")
		format := outputFlag(cmd, "text", "json")
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			out, err := format()
			if err != nil {
				return err
			}
			if err := ovr.Validate(); err != nil {
				return err
			}
			// Credentials in --repo's URL are taken out of it: the run's
			// clone URL reaches logs, the JSON output and the provenance.
			cloneURL, urlAuth, err := repoCredentials(*repoURL)
			if err != nil {
				return err
			}
			run, err := localRun(args, cloneURL, *commit, *ref, *repoName, *delivery, a.env)
			if err != nil {
				return err
			}
			cfg := a.cfg
			if urlAuth != nil && (cfg.Pipeline.GitTokenFile != "" || cfg.Pipeline.GitSSHKeyFile != "") {
				return errors.New("--repo's URL carries credentials and pipeline.gitTokenFile/gitSSHKeyFile is set too: give one of them")
			}
			// The repository was named on this command line, by its user:
			// a local path is fine here (never for webhook URLs).
			cfg.Pipeline.AllowLocalRepos = true
			if *noDeploy {
				cfg.Pipeline.Deploy = false
			}
			sink := &reportFiles{sarifDir: *sarifDir, dir: *reportDir, md: map[string]string{}}
			p, closeFn, err := newPipeline(cmd.Context(), a, pipelineOptions{noSign: !*sign, reports: sink.write, repo: ovr, gitAuth: urlAuth})
			if err != nil {
				return err
			}
			defer closeFn()
			fmt.Fprintf(a.stderr, "gantry run %s: %s at %s (%s)\n", run.ID, run.Repo, run.Commit, run.Ref)
			final, stageErr := pstages.RunOnce(cmd.Context(), run, p.Stages(), a.stderr)
			if err := sink.firstErr(); err != nil {
				return err
			}
			fns, _ := pstages.State(*final)
			if *summaryFile != "" {
				if err := appendSummary(*summaryFile, final, fns, sink); err != nil {
					return fmt.Errorf("--summary-file: %w", err)
				}
			}
			if out == "json" {
				if err := writeJSON(a.stdout, runOutput{Run: final, Functions: fns}); err != nil {
					return err
				}
			} else {
				writeRunText(a.stdout, final, fns)
			}
			switch final.State {
			case pipelines.StatePassed:
				return nil
			case pipelines.StateFailed:
				return policyFailure(errors.New(final.Message))
			default:
				if stageErr == nil {
					stageErr = errors.New(final.Message)
				}
				return stageErr
			}
		}
		return cmd
	})
}

type runOutput struct {
	Run       *pipelines.Run           `json:"run"`
	Functions []pstages.FunctionResult `json:"functions"`
}

// localRun builds the run record for the command's arguments.
func localRun(args []string, repoURL, commit, ref, repoName, delivery string, env []string) (*pipelines.Run, error) {
	now := time.Now().UTC()
	run := &pipelines.Run{ID: pipelines.NewRunID(now), CreatedAt: now, State: pipelines.StateQueued,
		Commit: commit, Ref: ref, Repo: repoName, DeliveryID: delivery}
	if run.DeliveryID == "" {
		run.DeliveryID = cmpOr(lookupEnv(env, "GITHUB_RUN_ID"), "local")
	}
	if run.Repo == "" {
		run.Repo = lookupEnv(env, "GITHUB_REPOSITORY")
	}
	switch {
	case repoURL != "" && len(args) > 0:
		return nil, errors.New("give DIR or --repo, not both")
	case repoURL != "":
		if commit == "" {
			return nil, errors.New("--repo needs --commit (a full SHA): a run builds one exact commit")
		}
		run.CloneURL = repoURL
		if run.Repo == "" {
			run.Repo = strings.TrimSuffix(filepath.Base(strings.TrimRight(repoURL, "/")), ".git")
		}
	default:
		dir := "."
		if len(args) > 0 {
			dir = args[0]
		}
		repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
		if err != nil {
			return nil, fmt.Errorf("%s is not in a git repository (%v): gantry run builds a commit; commit your files, or use --repo URL --commit SHA", dir, err)
		}
		wt, err := repo.Worktree()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
		root, _ := filepath.Abs(wt.Filesystem.Root())
		head, err := repo.Head()
		if err != nil {
			return nil, fmt.Errorf("%s: no HEAD commit: %w", root, err)
		}
		run.CloneURL = root
		if run.Commit == "" {
			run.Commit = head.Hash().String()
		}
		if run.Ref == "" && head.Name().IsBranch() {
			run.Ref = head.Name().String()
		}
		if run.Repo == "" {
			run.Repo = filepath.Base(root)
		}
	}
	return run, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func writeRunText(w io.Writer, run *pipelines.Run, fns []pstages.FunctionResult) {
	fmt.Fprintf(w, "run %s: %s\n", run.ID, strings.ToUpper(string(run.State)))
	if run.Message != "" {
		fmt.Fprintf(w, "  %s\n", run.Message)
	}
	for _, f := range fns {
		state := "passed"
		switch {
		case f.FailedStage != "":
			state = "FAILED at " + f.FailedStage
		case run.State != pipelines.StatePassed && run.State != pipelines.StateFailed:
			state = "not finished (" + string(run.State) + ")"
		}
		fmt.Fprintf(w, "function %s: %s\n", f.Name, state)
		if f.Image != "" {
			fmt.Fprintf(w, "  image    %s\n", f.Image)
		}
		for _, d := range f.Deployed {
			fmt.Fprintf(w, "  deployed %s\n", d)
		}
		if f.Reason != "" {
			fmt.Fprintf(w, "  reason   %s\n", f.Reason)
		}
		for _, fd := range f.Findings {
			fix := "no fix"
			if fd.Fixed != "" {
				fix = "fixed in " + fd.Fixed
			}
			fmt.Fprintf(w, "  %-8s %s %s %s (%s)\n", fd.Severity, fd.ID, fd.Package, fd.Installed, fix)
		}
		for _, ig := range f.Ignores {
			fmt.Fprintf(w, "  ignored  %s by %s until %s (%s): %s\n", ig.ID, ig.Source, ig.Expires, ig.Reason, strings.Join(ig.Findings, "; "))
		}
	}
}

// reportFiles writes the reports `gantry run` was asked for.
type reportFiles struct {
	sarifDir, dir string
	mu            sync.Mutex
	err           error
	md            map[string]string // function → scan markdown
}

func (r *reportFiles) write(_ pipelines.Run, fn, name string, body []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name == "scan.md" {
		r.md[fn] = string(body)
	}
	put := func(dir, file string) {
		if dir == "" || r.err != nil {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			r.err = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, file), body, 0o644); err != nil {
			r.err = err
		}
	}
	if strings.HasSuffix(name, ".sarif") {
		put(r.sarifDir, strings.TrimSuffix(name, ".sarif")+"-"+fn+".sarif")
	}
	put(r.dir, fn+"."+name)
}

func (r *reportFiles) firstErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return fmt.Errorf("writing reports: %w", r.err)
	}
	return nil
}

// maxSummary bounds the markdown summary: GitHub refuses a step summary over
// 1 MiB (and shows nothing of it), and the file may be shared with other
// tools of the same step.
const maxSummary = 512 << 10

// appendSummary appends a markdown summary (GitHub's step summary file is
// shared by the job's steps, so it is appended to, never replaced).
func appendSummary(path string, run *pipelines.Run, fns []pstages.FunctionResult, r *reportFiles) error {
	r.mu.Lock()
	md := maps.Clone(r.md)
	r.mu.Unlock()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(summaryMarkdown(run, fns, md, maxSummary)); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

// summaryMarkdown is the run's verdict, a table of the functions and each
// function's scan summary (its top findings), in at most limit bytes: the
// scan summaries that do not fit are left out with a note saying so.
func summaryMarkdown(run *pipelines.Run, fns []pstages.FunctionResult, scanMD map[string]string, limit int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Gantry run: %s\n\n", run.State)
	if run.Message != "" {
		fmt.Fprintf(&b, "%s\n\n", mdEscape(clip(run.Message, 1000)))
	}
	b.WriteString("| function | result | image |\n| --- | --- | --- |\n")
	for _, f := range fns {
		res := "passed"
		if f.FailedStage != "" {
			res = "failed at " + f.FailedStage + ": " + clip(f.Reason, 500)
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` |\n", mdEscape(f.Name), mdEscape(res), strings.ReplaceAll(f.Image, "`", "'"))
	}
	const note = "\n…the scan summaries of %d more function(s) are left out (GitHub's size limit): see the SARIF in code scanning, or gantry run --report-dir.\n"
	if b.Len()+len(note)+8 > limit {
		return clip(b.String(), limit-len(note)-8) + fmt.Sprintf(note, len(fns))
	}
	for i, f := range fns {
		sec := ""
		if m := scanMD[f.Name]; m != "" {
			sec = fmt.Sprintf("\n### %s\n\n%s\n", mdEscape(f.Name), m)
		}
		if b.Len()+len(sec)+len(note)+8 > limit {
			left := 0
			for _, g := range fns[i:] {
				if scanMD[g.Name] != "" {
					left++
				}
			}
			fmt.Fprintf(&b, note, left)
			break
		}
		b.WriteString(sec)
	}
	return b.String()
}

// clip cuts s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n-len("…"), 0)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// mdEscape keeps untrusted text (function names, messages) from breaking
// the table or injecting markup.
func mdEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "|", `\|`, "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;", "`", "'", "*", `\*`, "_", `\_`, "[", `\[`)
	return r.Replace(s)
}

// repoCredentials splits the credentials off an https clone URL
// (https://user:token@host/r → https://host/r, user and token as the git
// auth; a user alone, https://token@host/r, is the token). Other URLs come
// back unchanged with no auth, except ssh://user:password@…, refused:
// gantry reaches ssh with a key (pipeline.gitSSHKeyFile).
func repoCredentials(raw string) (string, *source.Auth, error) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.User == nil || u.Host == "" {
		return raw, nil, nil
	}
	pass, hasPass := u.User.Password()
	switch {
	case u.Scheme == "https" && hasPass:
		a := &source.Auth{Username: u.User.Username(), Token: pass}
		u.User = nil
		return u.String(), a, nil
	case u.Scheme == "https":
		a := &source.Auth{Token: u.User.Username()}
		u.User = nil
		return u.String(), a, nil
	case hasPass:
		u.User = nil
		return "", nil, fmt.Errorf("--repo %s: a password in a %s URL is refused; use https with a token, or ssh with pipeline.gitSSHKeyFile", u.String(), u.Scheme)
	}
	return raw, nil, nil
}
