package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/owenrumney/go-sarif/v2/sarif"
)

func sample() (*Report, *Verdict) {
	r := &Report{
		Image:     Image{Ref: "127.0.0.1:5000/team/fn@sha256:abc", Digest: "sha256:abc", OS: &OS{Family: "debian", Name: "12.4"}},
		ScannedAt: time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC),
		Scanner:   ScannerInfo{Name: "trivy", Version: "0.74.0", Mode: "embedded"},
		DB:        DBInfo{Repository: "127.0.0.1:5000/trivy-db:2", UpdatedAt: time.Date(2026, 6, 15, 6, 0, 0, 0, time.UTC)},
		Packages:  12,
		Findings: []Finding{
			{ID: "CVE-2099-0002", Package: "openssl", PackageType: "debian", InstalledVersion: "3.0.11-1", Severity: "CRITICAL",
				Title: "Unfixed \x1b[31mred\x1b[0m flaw\nsecond line", Target: "debian 12.4", Class: "os-pkgs", URL: "https://avd.example/CVE-2099-0002"},
			{ID: "CVE-2099-0001", Package: "openssl", PackageType: "debian", InstalledVersion: "3.0.11-1", FixedVersion: "3.0.99-1",
				Severity: "HIGH", Title: "Planted | pipe", Target: "debian 12.4", Class: "os-pkgs"},
			{ID: "GHSA-xxxx-yyyy-zzzz", Package: "left-pad", PackageType: "node-pkg", InstalledVersion: "1.0.0", FixedVersion: "1.3.0",
				Severity: "HIGH", Target: "usr/lib/node_modules/left-pad/package.json", Class: "lang-pkgs"},
		},
	}
	v := &Verdict{
		Pass: false, Policy: PolicySummary{Severities: []string{"CRITICAL", "HIGH"}, OnlyFixed: true, Ignores: 1},
		Decisions: []Decision{
			{Outcome: Allowed, Reason: "CRITICAL but no fix is available"},
			{Outcome: Fail, Reason: "HIGH with a fix available (3.0.99-1)"},
			{Outcome: Ignored, Reason: "ignored until 2026-12-31: dev only", Ignore: &IgnoreRef{ID: "GHSA-xxxx-yyyy-zzzz", Reason: "dev only", Expires: "2026-12-31"}},
		},
		Failed: 1, Ignored: 1, Allowed: 1,
		Summary: "1 finding fails the gate (CRITICAL,HIGH with a fix available); 1 ignored, 1 allowed",
	}
	return r, v
}

func TestJSONRoundTrip(t *testing.T) {
	r, v := sample()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r, v); err != nil {
		t.Fatal(err)
	}
	// The documented field names are the contract.
	for _, key := range []string{`"schemaVersion": 1`, `"verdict"`, `"pass": false`, `"findings"`, `"gate"`,
		`"outcome": "fail"`, `"fixedVersion": "3.0.99-1"`, `"installedVersion"`, `"packageType": "debian"`, `"updatedAt"`} {
		if !strings.Contains(buf.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	d, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict == nil || d.Verdict.Pass || len(d.Findings) != 3 || d.Findings[1].Gate.Outcome != Fail ||
		d.Findings[2].Gate.Ignore.Reason != "dev only" || d.Image.OS.Name != "12.4" {
		t.Fatalf("round trip lost data: %+v", d)
	}
}

func TestJSONWithoutVerdict(t *testing.T) {
	r, _ := sample()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), `"verdict"`) || strings.Contains(buf.String(), `"gate"`) {
		t.Fatalf("verdict written without a gate:\n%s", buf.String())
	}
	// A verdict for another report (wrong length) is not attached.
	_, v := sample()
	v.Decisions = v.Decisions[:1]
	if d := NewDocument(r, v); d.Findings[0].Gate != nil {
		t.Fatal("mismatched verdict attached to findings")
	}
}

func TestReadJSONRejects(t *testing.T) {
	cases := map[string]string{
		"other schema":  `{"schemaVersion": 2}`,
		"unknown field": `{"schemaVersion": 1, "surprise": true}`,
		"not json":      `schemaVersion: 1`,
		"trailing":      `{"schemaVersion": 1} {}`,
	}
	for name, in := range cases {
		if _, err := ReadJSON(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTable(t *testing.T) {
	r, v := sample()
	var buf bytes.Buffer
	if err := WriteTable(&buf, r, v); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasPrefix(out, "Gate: FAIL — 1 finding fails the gate") {
		t.Errorf("verdict not on top:\n%s", out)
	}
	if strings.ContainsAny(out, "\x1b") {
		t.Errorf("control characters reached the terminal:\n%q", out)
	}
	// Grouped by package: the failing openssl group comes before left-pad.
	ossl := strings.Index(out, "openssl 3.0.11-1 (debian)")
	lp := strings.Index(out, "left-pad 1.0.0 (node-pkg) in usr/lib/node_modules/left-pad/package.json")
	if ossl < 0 || lp < 0 || ossl > lp {
		t.Errorf("groups missing or out of order:\n%s", out)
	}
	if strings.Count(out, "openssl 3.0.11-1") != 1 {
		t.Errorf("openssl not grouped once:\n%s", out)
	}
	for _, want := range []string{"FAIL", "CVE-2099-0001", "fixed in 3.0.99-1", "ALLOWED", "no fix", "IGNORED", "debian 12.4"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestTableExpiredIgnoreSaysSo(t *testing.T) {
	r, v := sample()
	v.ExpiredIgnores = []IgnoreRef{{ID: "CVE-2099-0001", Reason: "old excuse", Expires: "2026-01-01"}}
	var buf bytes.Buffer
	if err := WriteTable(&buf, r, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "expired ignore no longer applies: CVE-2099-0001 (expired 2026-01-01") {
		t.Fatalf("expired ignore not shown:\n%s", buf.String())
	}
}

func TestSARIF(t *testing.T) {
	r, v := sample()
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, r, v, "1.2.3"); err != nil {
		t.Fatal(err)
	}
	log, err := sarif.FromBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || !strings.Contains(log.Schema, "sarif-schema-2.1.0") || len(log.Runs) != 1 {
		t.Fatalf("version %q schema %q runs %d", log.Version, log.Schema, len(log.Runs))
	}
	run := log.Runs[0]
	if len(run.Tool.Driver.Rules) != 3 || len(run.Results) != 3 {
		t.Fatalf("rules %d results %d", len(run.Tool.Driver.Rules), len(run.Results))
	}
	levels := map[string]string{}
	for _, res := range run.Results {
		levels[*res.RuleID] = *res.Level
		if len(res.Locations) != 1 || res.Locations[0].PhysicalLocation.ArtifactLocation.URI == nil {
			t.Errorf("%s: no location", *res.RuleID)
		}
		rule := run.Tool.Driver.Rules[*res.RuleIndex]
		if rule.ID != *res.RuleID {
			t.Errorf("result %s points at rule %s", *res.RuleID, rule.ID)
		}
	}
	if levels["CVE-2099-0001"] != "error" || levels["CVE-2099-0002"] != "warning" || levels["GHSA-xxxx-yyyy-zzzz"] != "warning" {
		t.Errorf("levels %v", levels)
	}
	uri := *run.Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI
	if uri != "team/fn" {
		t.Errorf("image URI %q", uri)
	}
	if got := *run.Results[2].Locations[0].PhysicalLocation.ArtifactLocation.URI; got != "usr/lib/node_modules/left-pad/package.json" {
		t.Errorf("lang URI %q", got)
	}
	if len(run.Results[2].Suppressions) != 1 || !strings.Contains(*run.Results[2].Suppressions[0].Justification, "dev only") {
		t.Errorf("ignored finding not suppressed")
	}
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"security-severity": "9.5"`) {
		t.Errorf("no security-severity for CRITICAL")
	}
}

func TestImageRepoURI(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:5000/team/fn@sha256:abc": "team/fn",
		"ghcr.io/org/app:1.0":               "org/app",
		"localhost/app":                     "app",
		"library/alpine:3":                  "library/alpine",
		"":                                  "image",
	}
	for in, want := range cases {
		if got := imageRepoURI(in); got != want {
			t.Errorf("imageRepoURI(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	r, v := sample()
	md := Markdown(r, v, 0)
	if !strings.HasPrefix(md, "**Scan gate: failed** ❌") {
		t.Errorf("verdict not first:\n%s", md)
	}
	// Failing findings come first.
	first := strings.Index(md, "| fail |")
	if first < 0 || first > strings.Index(md, "| allowed |") || first > strings.Index(md, "| ignored |") {
		t.Errorf("failing finding not first:\n%s", md)
	}
	// A table cell cannot be broken out of by a package name.
	r2, v2 := sample()
	r2.Findings[1].Package = "evil|pkg"
	if md2 := Markdown(r2, v2, 0); !strings.Contains(md2, `evil\|pkg`) {
		t.Errorf("pipe not escaped:\n%s", md2)
	}
	// Many findings are capped with a note.
	for i := range 500 {
		r.Findings = append(r.Findings, Finding{ID: fmt.Sprintf("CVE-2000-%04d", i), Package: "p", Severity: "LOW", InstalledVersion: "1"})
		v.Decisions = append(v.Decisions, Decision{Outcome: Allowed})
	}
	md = Markdown(r, v, 2000)
	if len(md) > 2000 || !strings.Contains(md, "more findings (see the full report)") {
		t.Errorf("not capped (%d bytes):\n%s", len(md), md)
	}
	if !strings.Contains(md, "CVE-2099-0001") {
		t.Errorf("top finding dropped by the cap")
	}
	clean := Markdown(&Report{Image: Image{Ref: "x@sha256:1"}}, &Verdict{Pass: true, Summary: "ok"}, 0)
	if !strings.Contains(clean, "passed") || !strings.Contains(clean, "No vulnerabilities found") {
		t.Errorf("clean summary:\n%s", clean)
	}
}

func FuzzMarkdown(f *testing.F) {
	f.Add("CVE-1", "pkg|x", "title `x` [y](z)", "https://a/(b)", 300, 5)
	f.Add("é", "\x1b[2J", "\xff\xfe", "", 20, 1)
	f.Fuzz(func(t *testing.T, id, pkg, title, url string, limit, n int) {
		if limit < 1 || limit > 1<<16 || n < 0 || n > 200 {
			return
		}
		r := &Report{Image: Image{Ref: pkg}}
		v := &Verdict{Summary: title}
		for range n {
			r.Findings = append(r.Findings, Finding{ID: id, Package: pkg, Title: title, URL: url, Severity: "HIGH"})
			v.Decisions = append(v.Decisions, Decision{Outcome: Fail, Reason: title})
		}
		md := Markdown(r, v, limit)
		if len(md) > max(limit, len("…\n")) {
			t.Fatalf("%d bytes over the limit %d", len(md), limit)
		}
		if utf8.ValidString(id+pkg+title+url) && !utf8.ValidString(md) {
			t.Fatalf("cut inside a rune: %q", md)
		}
		if strings.ContainsRune(md, '\x1b') {
			t.Fatalf("escape sequence in markdown")
		}
	})
}

func FuzzReadJSON(f *testing.F) {
	r, v := sample()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, r, v); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"schemaVersion":1,"findings":[{"id":1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ReadJSON(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		rep := &Report{Image: d.Image, Findings: make([]Finding, len(d.Findings))}
		for i, f := range d.Findings {
			rep.Findings[i] = f.Finding
		}
		if err := WriteTable(&out, rep, d.Verdict); err != nil {
			t.Fatal(err)
		}
	})
}
