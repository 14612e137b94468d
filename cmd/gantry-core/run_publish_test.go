package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/pipelines"
	pstages "github.com/gantry-dev/gantry/pipelines/stages"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// What the reusable workflow publishes, made by a real `gantry run` against
// the test environment: the SARIF files uploaded to code scanning and the
// job summary. Three functions: good (clean), bad (the planted CVE: fails
// at scan) and root (no USER: fails at lint).
func TestRunPublishesSARIFAndSummary(t *testing.T) {
	be := newBuildEnv(t)
	img := func(s string) string { return be.registry + "/gantry-publish-" + be.uniq + "/" + s }
	df := "FROM " + be.base + "\nCOPY rootfs/ /\nUSER 1000:1000\n"
	files := map[string]string{
		"gantry.yaml": "version: 1\nfunctions:\n" +
			"  - {name: good, context: functions/good, image: " + img("good") + "}\n" +
			"  - {name: bad, context: functions/bad, image: " + img("bad") + "}\n" +
			"  - {name: root, context: functions/root, image: " + img("root") + "}\n",
		"functions/good/Dockerfile": df,
		"functions/bad/Dockerfile":  df,
		"functions/root/Dockerfile": "FROM " + be.base + "\nCOPY rootfs/ /\n",
	}
	withRootfs(files, "functions/good", scantest.CleanFiles())
	withRootfs(files, "functions/bad", scantest.VulnerableFiles())
	withRootfs(files, "functions/root", scantest.CleanFiles())
	repo := filepath.Join(be.dir, "repo")
	gitCommit(t, repo, files, "functions")

	sarifDir := filepath.Join(be.dir, "sarif")
	summary := filepath.Join(be.dir, "summary.md")
	// The step summary file is shared by the job's steps: what is there stays.
	if err := os.WriteFile(summary, []byte("earlier step\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := gantry(t, be.env, "run", repo, "--no-deploy", "--sign=false", "--output", "json",
		"--sarif-dir", sarifDir, "--summary-file", summary)
	if code != exitPolicy {
		t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, exitPolicy, out, stderr)
	}
	var res runOutput
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	failed := map[string]string{}
	for _, f := range res.Functions {
		failed[f.Name] = f.FailedStage
	}
	if want := map[string]string{"good": "", "bad": "scan", "root": "lint"}; !maps.Equal(failed, want) {
		t.Fatalf("failed stages %v, want %v", failed, want)
	}

	t.Run("SARIF", func(t *testing.T) {
		entries, err := os.ReadDir(sarifDir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		// One file per category; root stopped at lint, so it has no scan.
		want := []string{"lint-bad.sarif", "lint-good.sarif", "lint-root.sarif", "scan-bad.sarif", "scan-good.sarif"}
		if !slices.Equal(names, want) {
			t.Fatalf("files %v, want %v", names, want)
		}
		keys := map[string]string{} // GitHub's run key (tool + category) → file
		results := map[string][]sarifResult{}
		for _, n := range names {
			b, err := os.ReadFile(filepath.Join(sarifDir, n))
			if err != nil {
				t.Fatal(err)
			}
			stage, fn, _ := strings.Cut(strings.TrimSuffix(n, ".sarif"), "-")
			for _, p := range checkCodeScanningSARIF(t, n, b, repo, pstages.SARIFCategory(stage, fn)) {
				if other, dup := keys[p.key]; dup {
					t.Errorf("%s and %s both have a run %s: GitHub refuses the upload", other, n, p.key)
				}
				keys[p.key] = n
				results[n] = append(results[n], p.results...)
			}
		}
		// The findings the gate failed on are errors, at bad's Dockerfile.
		var cve *sarifResult
		for i, r := range results["scan-bad.sarif"] {
			if r.RuleID == scantest.FixableHigh {
				cve = &results["scan-bad.sarif"][i]
			}
		}
		if cve == nil || cve.Level != "error" || cve.Locations[0].PhysicalLocation.ArtifactLocation.URI != "functions/bad/Dockerfile" ||
			!strings.Contains(cve.Message.Text, "openssl") || len(cve.PartialFingerprints) == 0 {
			t.Errorf("%s in scan-bad.sarif: %+v", scantest.FixableHigh, cve)
		}
		if n := len(results["scan-good.sarif"]); n != 0 {
			t.Errorf("scan-good.sarif has %d results, want none", n)
		}
		var rootUser bool
		for _, r := range results["lint-root.sarif"] {
			loc := r.Locations[0].PhysicalLocation
			if r.RuleID == "gantry-root-user" && r.Level == "error" && loc.ArtifactLocation.URI == "functions/root/Dockerfile" {
				rootUser = true
			}
		}
		if !rootUser {
			t.Errorf("lint-root.sarif lacks gantry-root-user at functions/root/Dockerfile: %+v", results["lint-root.sarif"])
		}
	})

	t.Run("summary", func(t *testing.T) {
		b, err := os.ReadFile(summary)
		if err != nil {
			t.Fatal(err)
		}
		md := string(b)
		if !strings.HasPrefix(md, "earlier step\n") {
			t.Errorf("the earlier content was not kept:\n%s", md)
		}
		if len(b) > maxSummary+len("earlier step\n") || !utf8.Valid(b) {
			t.Errorf("summary of %d bytes (cap %d), valid UTF-8 %v", len(b), maxSummary, utf8.Valid(b))
		}
		for _, want := range []string{
			"## Gantry run: " + string(pipelines.StateFailed),
			"| good | passed | `" + img("good") + "@sha256:",
			"| bad | failed at scan: ",
			"| root | failed at lint: ",
			"### bad", "**Scan gate: failed**", scantest.FixableHigh, "openssl",
			"### good", "**Scan gate: passed**", "No vulnerabilities found.",
		} {
			if !strings.Contains(md, want) {
				t.Errorf("summary lacks %q:\n%s", want, md)
			}
		}
		// The failing finding comes before the rest (top findings first).
		bad := md[strings.Index(md, "### bad"):]
		if i, j := strings.Index(bad, scantest.FixableHigh), strings.Index(bad, scantest.FixableMedium); i < 0 || (j >= 0 && j < i) {
			t.Errorf("%s is not listed before %s:\n%s", scantest.FixableHigh, scantest.FixableMedium, bad)
		}
		if strings.Contains(md, "### root") {
			t.Errorf("root never reached the scan, yet has a scan section:\n%s", md)
		}
	})
}

type sarifResult struct {
	RuleID    string `json:"ruleId"`
	RuleIndex *int   `json:"ruleIndex"`
	Level     string `json:"level"`
	Message   struct {
		Text string `json:"text"`
	} `json:"message"`
	Locations []struct {
		PhysicalLocation struct {
			ArtifactLocation struct {
				URI string `json:"uri"`
			} `json:"artifactLocation"`
			Region struct {
				StartLine int `json:"startLine"`
			} `json:"region"`
		} `json:"physicalLocation"`
	} `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
}

type checkedRun struct {
	key     string // tool name + automationDetails.id: unique per upload
	results []sarifResult
}

// checkCodeScanningSARIF checks b against what GitHub code scanning
// requires of an uploaded SARIF file ("SARIF support for code scanning" and
// its limits): version 2.1.0 with $schema; at most 20 runs; each run's tool
// driver named, rules with unique ids, automationDetails.id the expected
// category (ending in "/"); each result with a ruleId that is a rule of the
// run (ruleIndex pointing at it), a level, a message, 1 to 1000 locations
// whose uri is relative to the repository root and names a file there,
// region.startLine >= 1; security-severity a number from 0 to 10.
func checkCodeScanningSARIF(t *testing.T, name string, b []byte, repo, category string) []checkedRun {
	t.Helper()
	bad := func(format string, args ...any) { t.Errorf("%s: %s", name, fmt.Sprintf(format, args...)) }
	if len(b) > 10<<20 {
		bad("%d bytes: over code scanning's 10 MB", len(b))
	}
	var log struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID         string         `json:"id"`
						Properties map[string]any `json:"properties"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			AutomationDetails struct {
				ID string `json:"id"`
			} `json:"automationDetails"`
			Results []sarifResult `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b, &log); err != nil {
		bad("not JSON: %v", err)
		return nil
	}
	if log.Version != "2.1.0" {
		bad("version %q, want 2.1.0", log.Version)
	}
	if u, err := url.Parse(log.Schema); err != nil || u.Scheme != "https" || !strings.Contains(log.Schema, "sarif") {
		bad("$schema %q", log.Schema)
	}
	if len(log.Runs) == 0 || len(log.Runs) > 20 {
		bad("%d runs (1 to 20)", len(log.Runs))
	}
	var out []checkedRun
	for ri, run := range log.Runs {
		d := run.Tool.Driver
		if d.Name == "" {
			bad("run %d: no tool.driver.name", ri)
		}
		if run.AutomationDetails.ID != category {
			bad("run %d (%s): automationDetails.id %q, want %q", ri, d.Name, run.AutomationDetails.ID, category)
		}
		ruleAt := map[string]int{}
		for i, r := range d.Rules {
			if _, dup := ruleAt[r.ID]; dup || r.ID == "" {
				bad("run %d: rule id %q empty or repeated", ri, r.ID)
			}
			ruleAt[r.ID] = i
			if s, ok := r.Properties["security-severity"]; ok {
				f, err := strconv.ParseFloat(fmt.Sprint(s), 64)
				if err != nil || f < 0 || f > 10 {
					bad("rule %s: security-severity %v is not a number from 0 to 10", r.ID, s)
				}
			}
		}
		for i, res := range run.Results {
			where := fmt.Sprintf("run %d (%s) result %d (%s)", ri, d.Name, i, res.RuleID)
			idx, ok := ruleAt[res.RuleID]
			if res.RuleID == "" || !ok {
				bad("%s: ruleId is not a rule of the run", where)
			}
			if res.RuleIndex != nil && *res.RuleIndex != idx {
				bad("%s: ruleIndex %d, but the rule is at %d", where, *res.RuleIndex, idx)
			}
			if !slices.Contains([]string{"none", "note", "warning", "error"}, res.Level) {
				bad("%s: level %q", where, res.Level)
			}
			if strings.TrimSpace(res.Message.Text) == "" {
				bad("%s: no message.text", where)
			}
			if len(res.Locations) == 0 || len(res.Locations) > 1000 {
				bad("%s: %d locations (1 to 1000)", where, len(res.Locations))
			}
			for _, l := range res.Locations {
				uri := l.PhysicalLocation.ArtifactLocation.URI
				u, err := url.Parse(uri)
				if err != nil || u.Scheme != "" || path.IsAbs(uri) || path.Clean(uri) != uri || strings.HasPrefix(uri, "../") {
					bad("%s: uri %q is not a clean path relative to the repository root", where, uri)
				} else if fi, err := os.Stat(filepath.Join(repo, filepath.FromSlash(uri))); err != nil || !fi.Mode().IsRegular() {
					bad("%s: uri %q is not a file of the repository", where, uri)
				}
				if l.PhysicalLocation.Region.StartLine < 1 {
					bad("%s: region.startLine %d", where, l.PhysicalLocation.Region.StartLine)
				}
			}
		}
		out = append(out, checkedRun{key: d.Name + " " + run.AutomationDetails.ID, results: run.Results})
	}
	return out
}

// The summary stays under its cap whatever the number of functions: the
// table is kept, the scan sections that do not fit are counted in a note.
func TestSummaryMarkdownCap(t *testing.T) {
	section := "**Scan gate: failed** ❌\n\n" + strings.Repeat("| fail | HIGH | CVE-1 | é | 1 | 2 |\n", 100)
	many := func(n int, reason string) ([]pstages.FunctionResult, map[string]string) {
		var fns []pstages.FunctionResult
		md := map[string]string{}
		for i := range n {
			name := fmt.Sprintf("fn-%03d", i)
			fns = append(fns, pstages.FunctionResult{Name: name, FailedStage: "scan", Reason: reason, Image: "r/x@sha256:1"})
			md[name] = section
		}
		return fns, md
	}
	run := &pipelines.Run{State: pipelines.StateFailed, Message: strings.Repeat("m", 5000)}
	cases := []struct {
		name     string
		n        int
		reason   string
		limit    int
		sections int // scan sections kept; -1: fewer than n
		note     bool
	}{
		{"all fit", 3, "gate", maxSummary, 3, false},
		{"300 functions", 300, "gate", maxSummary, -1, true},
		{"long reasons are clipped", 2, strings.Repeat("é", 10000), maxSummary, 2, false},
		{"even the table does not fit", 300, "gate", 2000, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fns, md := many(c.n, c.reason)
			s := summaryMarkdown(run, fns, md, c.limit)
			if len(s) > c.limit || !utf8.ValidString(s) {
				t.Fatalf("%d bytes (limit %d), valid UTF-8 %v", len(s), c.limit, utf8.ValidString(s))
			}
			got := strings.Count(s, "\n### ")
			if c.sections >= 0 && got != c.sections || c.sections < 0 && (got == 0 || got >= c.n) {
				t.Errorf("%d scan sections, want %d", got, c.sections)
			}
			if strings.Contains(s, "left out") != c.note {
				t.Errorf("note of what was left out: %v, want %v", !c.note, c.note)
			}
			if c.note && c.sections != 0 && !strings.Contains(s, fmt.Sprintf("of %d more function(s)", c.n-got)) {
				t.Errorf("the note does not count the %d sections left out:\n%s", c.n-got, s[len(s)-300:])
			}
			if c.limit == maxSummary && strings.Count(s, "| fn-") != c.n {
				t.Errorf("%d table rows, want %d", strings.Count(s, "| fn-"), c.n)
			}
		})
	}
}
