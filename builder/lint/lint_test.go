package lint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func lintOne(t *testing.T, src string, opts Options) *Report {
	t.Helper()
	rep, err := Lint(context.Background(), []File{{Path: "app/Dockerfile", Data: []byte(src)}}, opts)
	if err != nil {
		t.Fatalf("Lint: %v", err)
	}
	return rep
}

func TestBuildKitChecks(t *testing.T) {
	tests := []struct {
		name string
		src  string
		rule string // "" means no BuildKit finding
		line int
	}{
		{"stage name casing", "FROM " + pinned + " AS Build\nUSER 1000\n", "StageNameCasing", 1},
		{"from as casing", "FROM " + pinned + " as build\nUSER 1000\n", "FromAsCasing", 1},
		{"json args", "FROM " + pinned + "\nUSER 1000\nCMD httpd -f\n", "JSONArgsRecommended", 3},
		{"maintainer", "FROM " + pinned + "\nMAINTAINER someone\nUSER 1000\n", "MaintainerDeprecated", 2},
		{"undefined var", "FROM " + pinned + "\nRUN echo $NOPE\nUSER 1000\nENV A=$UNSET\n", "UndefinedVar", 4},
		{"unknown target", "FROM " + pinned + "\nUSER 1000\n", "", 0},
		{"clean", "FROM " + pinned + "\nUSER 1000\nCMD [\"httpd\"]\n", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := lintOne(t, tc.src, Options{Hadolint: "off"})
			var bk []Finding
			for _, f := range rep.Findings {
				if f.Source == SourceBuildKit {
					bk = append(bk, f)
				}
			}
			if tc.rule == "" {
				if len(bk) != 0 {
					t.Fatalf("unexpected BuildKit findings %+v", bk)
				}
				return
			}
			i := slices.IndexFunc(bk, func(f Finding) bool { return f.Rule == tc.rule })
			if i < 0 {
				t.Fatalf("no %s in %+v", tc.rule, bk)
			}
			if f := bk[i]; f.Line != tc.line || f.Severity != Warning || !strings.HasPrefix(f.DocURL, "https://docs.docker.com/") || f.File != "app/Dockerfile" {
				t.Errorf("finding %+v: want line %d, warning, docs URL, file", f, tc.line)
			}
		})
	}
}

func TestBuildKitUnknownTargetIsAnError(t *testing.T) {
	rep := lintOne(t, "FROM "+pinned+"\nUSER 1000\n", Options{Hadolint: "off", Target: "nope"})
	if !rep.Fails(Error) || !slices.ContainsFunc(rep.Findings, func(f Finding) bool {
		return f.Rule == "BuildError" && strings.Contains(f.Message, "nope")
	}) {
		t.Fatalf("unknown target not reported as an error: %+v", rep.Findings)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"unknown instruction", "FROM " + pinned + "\nUSER 1000\nFROBNICATE x\n", 3, "frobnicate"},
		{"no FROM", "# just a comment\nRUN true\n", 2, "no build stage"},
		{"empty", "", 0, "no instructions"},
		{"bad flag", "FROM " + pinned + "\nRUN --bogus=1 true\n", 2, "bogus"},
		{"env without value", "FROM " + pinned + "\nENV\n", 2, "ENV"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Lint(context.Background(), []File{{Path: "fn/Dockerfile", Data: []byte(tc.src)}}, Options{Hadolint: "off"})
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("want *ParseError, got %v", err)
			}
			if pe.Line != tc.line || pe.File != "fn/Dockerfile" || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.msg)) {
				t.Fatalf("ParseError %q (line %d): want line %d mentioning %q", err, pe.Line, tc.line, tc.msg)
			}
		})
	}
}

func TestOversizedDockerfileRefused(t *testing.T) {
	big := "FROM " + pinned + "\n" + strings.Repeat("# padding\n", MaxDockerfileSize/10+1)
	if _, err := Lint(context.Background(), []File{{Path: "D", Data: []byte(big)}}, Options{Hadolint: "off"}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized Dockerfile: err = %v", err)
	}
}

func TestThreshold(t *testing.T) {
	rep := &Report{Findings: []Finding{{Severity: Warning}, {Severity: Info}}}
	for _, tc := range []struct {
		threshold Severity
		fails     bool
	}{{Error, false}, {Warning, true}, {Info, true}, {Never, false}} {
		if got := rep.Fails(tc.threshold); got != tc.fails {
			t.Errorf("Fails(%s) = %v, want %v", tc.threshold, got, tc.fails)
		}
	}
	if (&Report{}).Fails(Info) {
		t.Error("an empty report fails")
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []Severity{Info, Warning, Error, Never} {
		b, _ := s.MarshalText()
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%s: round trip gave %v, %v", s, back, err)
		}
	}
	if _, err := ParseSeverity("loud"); err == nil {
		t.Error("unknown severity accepted")
	}
}

// hadolint's JSON, written by hand from its documented format (README,
// "--format json"): hadolint itself cannot be installed on this machine.
const hadolintSample = `[
 {"code":"DL3006","column":1,"file":"-","level":"warning","line":1,"message":"Always tag the version of an image explicitly"},
 {"code":"DL3008","column":1,"file":"-","level":"info","line":3,"message":"Pin versions in apt get install"},
 {"code":"SC2086","column":1,"file":"-","level":"style","line":4,"message":"Double quote to prevent globbing and word splitting."},
 {"code":"DL3000","column":1,"file":"-","level":"error","line":5,"message":"Use absolute WORKDIR"}
]`

func TestParseHadolintJSON(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hadolint.json")
	if err := os.WriteFile(path, []byte(hadolintSample), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHadolintJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{
		{Rule: "DL3006", Source: SourceHadolint, Severity: Warning, Line: 1, Message: "Always tag the version of an image explicitly", DocURL: "https://github.com/hadolint/hadolint/wiki/DL3006"},
		{Rule: "DL3008", Source: SourceHadolint, Severity: Info, Line: 3, Message: "Pin versions in apt get install", DocURL: "https://github.com/hadolint/hadolint/wiki/DL3008"},
		{Rule: "SC2086", Source: SourceHadolint, Severity: Info, Line: 4, Message: "Double quote to prevent globbing and word splitting.", DocURL: "https://www.shellcheck.net/wiki/SC2086"},
		{Rule: "DL3000", Source: SourceHadolint, Severity: Error, Line: 5, Message: "Use absolute WORKDIR", DocURL: "https://github.com/hadolint/hadolint/wiki/DL3000"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{``, `{}`, `[{"code":"DL1","level":"loud","line":1}]`, `[{"level":"error","line":1}]`, `[1]`} {
		if _, err := ParseHadolintJSON([]byte(bad)); err == nil {
			t.Errorf("ParseHadolintJSON(%q) accepted", bad)
		}
	}
	if got, err := ParseHadolintJSON([]byte(`[]`)); err != nil || len(got) != 0 {
		t.Errorf("empty result: %v %v", got, err)
	}
}

func TestHadolintAbsentIsNotedOnce(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // nothing on PATH
	src := []byte("FROM " + pinned + "\nUSER 1000\n")
	rep, err := Lint(context.Background(), []File{{Path: "a/Dockerfile", Data: src}, {Path: "b/Dockerfile", Data: src}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "hadolint") || !strings.Contains(rep.Notes[0], "not found") {
		t.Fatalf("notes = %q, want one note about hadolint", rep.Notes)
	}
	rep, err = Lint(context.Background(), []File{{Path: "a/Dockerfile", Data: src}}, Options{Hadolint: "off"})
	if err != nil || len(rep.Notes) != 0 {
		t.Fatalf("hadolint off: notes %q, err %v", rep.Notes, err)
	}
}

// TestHadolintExec runs the exec path against a stand-in script that
// behaves like hadolint's CLI (reads the Dockerfile on stdin, writes its
// documented JSON, exits 1 when it found something), since the real binary
// cannot be installed here.
func TestHadolintExec(t *testing.T) {
	dir := t.TempDir()
	fixture := filepath.Join(dir, "out.json")
	if err := os.WriteFile(fixture, []byte(hadolintSample), 0o600); err != nil {
		t.Fatal(err)
	}
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := script("hadolint-good", `[ "$*" = "--no-color --format json -" ] || { echo "bad args: $*" >&2; exit 2; }
grep -q '^FROM' || { echo "no Dockerfile on stdin" >&2; exit 2; }
cat `+fixture+`; exit 1`)
	if _, err := Lint(context.Background(), []File{{Path: "D", Data: []byte("FROM " + pinned + "\nUSER 1\n")}},
		Options{Hadolint: filepath.Join(dir, "no-such-hadolint")}); err == nil || !strings.Contains(err.Error(), "no-such-hadolint") {
		t.Errorf("configured hadolint that does not exist: err = %v, want an error naming it", err)
	}
	crash := script("hadolint-crash", `echo "hadolint: internal error" >&2; exit 3`)
	garbage := script("hadolint-garbage", `echo 'not json'`)
	src := "FROM " + pinned + "\nUSER 1000\n"

	rep, err := Lint(context.Background(), []File{{Path: "fn/Dockerfile", Data: []byte(src)}}, Options{Hadolint: good})
	if err != nil {
		t.Fatal(err)
	}
	var hl []Finding
	for _, f := range rep.Findings {
		if f.Source == SourceHadolint {
			hl = append(hl, f)
		}
	}
	if len(hl) != 4 || hl[0].File != "fn/Dockerfile" || len(rep.Notes) != 0 {
		t.Fatalf("hadolint findings %+v, notes %q", hl, rep.Notes)
	}
	// Ignores and overrides apply to hadolint rules too.
	rep, err = Lint(context.Background(), []File{{Path: "fn/Dockerfile", Data: []byte("FROM " + pinned + "\n# gantry:ignore=DL3008 versions pinned by the base\nUSER 1000\n")}},
		Options{Hadolint: good, Severity: map[string]string{"DL3000": "info"}, Ignores: []Ignore{{Rule: "DL3006", Reason: "pinned by digest"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 2 || len(rep.Ignored) != 2 {
		t.Errorf("want 2 findings and 2 ignored, got %+v / %+v", rep.Findings, rep.Ignored)
	}
	for _, f := range rep.Findings {
		if f.Rule == "DL3006" || f.Rule == "DL3008" || (f.Rule == "DL3000" && f.Severity != Info) {
			t.Errorf("ignore/override not applied to %+v", f)
		}
	}
	for _, bin := range []string{crash, garbage} {
		if _, err := Lint(context.Background(), []File{{Path: "fn/Dockerfile", Data: []byte(src)}}, Options{Hadolint: bin}); err == nil || !strings.Contains(err.Error(), "hadolint") {
			t.Errorf("%s: err = %v, want a hadolint error", filepath.Base(bin), err)
		}
	}
}

func TestSARIF(t *testing.T) {
	src := "FROM busybox\n# gantry:ignore=gantry-add-url reviewed mirror\nADD https://example.com/a /a\nCMD httpd\n"
	rep := lintOne(t, src, Options{Hadolint: "off"})
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, rep); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema  string `json:"$schema"`
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Message   struct{ Text string }
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
				Suppressions []struct {
					Kind          string
					Justification string
				}
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("SARIF is not JSON: %v", err)
	}
	if doc.Version != "2.1.0" || !strings.Contains(doc.Schema, "sarif") {
		t.Fatalf("version %q schema %q", doc.Version, doc.Schema)
	}
	byRule := map[string]int{}
	for _, run := range doc.Runs {
		for _, res := range run.Results {
			byRule[res.RuleID]++
			loc := res.Locations[0].PhysicalLocation
			if loc.ArtifactLocation.URI != "app/Dockerfile" || loc.Region.StartLine < 1 || res.Message.Text == "" {
				t.Errorf("result %+v: want a location in app/Dockerfile and a message", res)
			}
			if res.RuleID == "gantry-add-url" && (len(res.Suppressions) != 1 || res.Suppressions[0].Justification != "reviewed mirror") {
				t.Errorf("ignored finding not a suppression: %+v", res)
			}
			if res.RuleID == "gantry-base-latest" && res.Level != "error" {
				t.Errorf("level %q for an error", res.Level)
			}
		}
		if run.Tool.Driver.Name == "gantry" && len(run.Tool.Driver.Rules) < len(Rules()) {
			t.Errorf("gantry run describes %d rules, want all %d", len(run.Tool.Driver.Rules), len(Rules()))
		}
	}
	for _, r := range []string{"gantry-base-latest", "gantry-add-url", "gantry-root-user", "JSONArgsRecommended"} {
		if byRule[r] != 1 {
			t.Errorf("SARIF has %d results for %s, want 1 (all: %v)", byRule[r], r, byRule)
		}
	}
}

func TestTableAndJSON(t *testing.T) {
	rep := lintOne(t, "FROM busybox\nUSER 1000\n", Options{Hadolint: "off"})
	var table bytes.Buffer
	if err := WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "app/Dockerfile:1") || !strings.Contains(table.String(), "gantry-base-latest") ||
		!strings.Contains(table.String(), "1 error(s)") {
		t.Errorf("table:\n%s", table.String())
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Findings) != len(rep.Findings) || back.Findings[0].Severity != Error {
		t.Fatalf("JSON round trip: %v %+v\n%s", err, back, js.String())
	}
	if !strings.Contains(js.String(), `"severity": "error"`) {
		t.Errorf("severity not written by name:\n%s", js.String())
	}
}

func FuzzLint(f *testing.F) {
	seeds := []string{
		"FROM " + pinned + "\nUSER 1000\n",
		"ARG BASE=busybox\nFROM ${BASE} AS b\nFROM b\nUSER root\n",
		"# syntax=docker/dockerfile:1\nFROM scratch\nADD --checksum=sha256:00 https://x/y /y\nRUN --network=host --mount=type=secret,id=a curl x | sh\n",
		"FROM a\nRUN <<EOF\ncurl x | sh\nEOF\nENV A=B C=D\nARG TOKEN\nLABEL a=b\n",
		"# gantry:ignore=gantry-root-user\nFROM a\n# gantry:ignore=\nUSER ${X:-0}\n",
		"FROM a\\\n  b\nONBUILD RUN x\nHEALTHCHECK CMD true\nSHELL [\"sh\",\"-c\"]\n",
		"# escape=`\nFROM a\nRUN echo `\n  b\n",
		"FROM --platform=$BUILDPLATFORM a AS x\nCOPY --from=x / /\nWORKDIR rel\nEXPOSE 80/TCP\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Lint(context.Background(), []File{{Path: "Dockerfile", Data: data}}, Options{Hadolint: "off"})
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("non-parse error: %v", err)
			}
			return
		}
		for _, fd := range rep.Findings {
			if fd.Rule == "" || fd.Severity < Info || fd.Severity > Error {
				t.Fatalf("malformed finding %+v", fd)
			}
		}
		if err := WriteSARIF(&bytes.Buffer{}, rep); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseHadolintJSON(f *testing.F) {
	f.Add([]byte(hadolintSample))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"code":"DL3006","level":"style","line":-4}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := ParseHadolintJSON(data)
		if err != nil {
			return
		}
		for _, fd := range fs {
			if fd.Rule == "" || fd.Line < 0 || fd.Severity < Info || fd.Severity > Error {
				t.Fatalf("malformed finding %+v from %q", fd, data)
			}
		}
	})
}

// BenchmarkLint lints a typical multi-stage function Dockerfile with the
// in-process sources (hadolint off): the cost the pipeline's lint stage adds.
func BenchmarkLint(b *testing.B) {
	src := []byte("# syntax=docker/dockerfile:1\nARG BASE=" + pinned + "\nFROM ${BASE} AS build\nWORKDIR /src\nCOPY . .\n" +
		"RUN --mount=type=cache,target=/root/.cache make build\nFROM ${BASE}\nCOPY --from=build /src/out /app\n" +
		"ENV PORT=8080\nEXPOSE 8080\nUSER 1000:1000\nCMD [\"/app/server\"]\n")
	files := []File{{Path: "Dockerfile", Data: src}}
	for b.Loop() {
		if _, err := Lint(context.Background(), files, Options{Hadolint: "off"}); err != nil {
			b.Fatal(err)
		}
	}
}
