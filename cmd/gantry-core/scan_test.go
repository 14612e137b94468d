package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/owenrumney/go-sarif/v2/sarif"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/scanner/report"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

func TestScanCommand(t *testing.T) {
	te := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fx, err := scantest.Setup(ctx, te.BuildkitAddr, te.Registry, te.BaseImage, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := []string{
		"GANTRY_REGISTRY_INSECURE=" + te.Registry + ",127.0.0.1:1",
		"GANTRY_SCANNER_DB_REPOSITORIES=" + fx.DBRepository,
		"GANTRY_SCANNER_JAVA_DB_REPOSITORIES=",
		"GANTRY_SCANNER_CACHE_DIR=" + filepath.Join(dir, "cache"),
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	acceptBoth := write("ignore.yaml", "ignores:\n  - id: "+scantest.FixableHigh+"\n    reason: not reachable\n    expires: 2999-01-01\n"+
		"  - id: pkg:left-pad\n    reason: build-time only\n    expires: 2999-01-01\n")
	expired := write("expired.yaml", "ignores:\n  - id: "+scantest.FixableHigh+"\n    reason: was fine\n    expires: 2001-01-01\n"+
		"  - id: pkg:left-pad\n    reason: build-time only\n    expires: 2999-01-01\n")
	noExpiry := write("noexpiry.yaml", "ignores:\n  - id: "+scantest.FixableHigh+"\n    reason: forever\n")
	sbomFile := filepath.Join(dir, "sbom.cdx.json")

	cases := []struct {
		name       string
		args       []string
		env        []string
		wantCode   int
		wantOut    []string
		wantStderr []string
	}{
		{"vulnerable fails the default gate", []string{"scan", fx.Vulnerable}, nil, exitPolicy,
			[]string{"Gate: FAIL — 2 findings fail the gate (CRITICAL,HIGH with a fix available)", "openssl 3.0.11-1~deb12u2 (debian)", scantest.FixableHigh},
			[]string{"scan gate failed"}},
		{"clean passes", []string{"scan", fx.Clean}, nil, exitOK, []string{"Gate: PASS", "0 findings"}, nil},
		{"CRITICAL only: the unfixed CRITICAL is allowed", []string{"scan", "--severity", "CRITICAL", fx.Vulnerable}, nil, exitOK,
			[]string{"Gate: PASS"}, nil},
		{"CRITICAL, unfixed too: fails", []string{"scan", "--severity", "CRITICAL", "--only-fixed=false", fx.Vulnerable}, nil, exitPolicy,
			[]string{"1 finding fails the gate (CRITICAL)", "no fix"}, nil},
		{"severity from the environment", []string{"scan", fx.Vulnerable}, []string{"GANTRY_SCANNER_SEVERITIES=LOW"}, exitOK, []string{"Gate: PASS"}, nil},
		{"ignores accept the failing findings", []string{"scan", "--ignore-file", acceptBoth, fx.Vulnerable}, nil, exitOK,
			[]string{"Gate: PASS", "2 ignored", "IGNORED"}, nil},
		{"expired ignore stops ignoring and says so", []string{"scan", "--ignore-file", expired, fx.Vulnerable}, nil, exitPolicy,
			[]string{"expired ignore no longer applies: " + scantest.FixableHigh + " (expired 2001-01-01"}, []string{"expired and no longer applies"}},
		{"ignore without expiry is an error", []string{"scan", "--ignore-file", noExpiry, fx.Vulnerable}, nil, exitFailure,
			nil, []string{"noexpiry.yaml: line 2: entry needs expires"}},
		{"markdown", []string{"scan", "-o", "markdown", fx.Vulnerable}, nil, exitPolicy, []string{"**Scan gate: failed**", "| fail | HIGH |"}, nil},
		{"DB unreachable", []string{"scan", fx.Vulnerable}, []string{"GANTRY_SCANNER_DB_REPOSITORIES=127.0.0.1:1/x/trivy-db:2", "GANTRY_SCANNER_CACHE_DIR=" + filepath.Join(dir, "empty")}, exitFailure,
			nil, []string{"vulnerability DB unavailable", "127.0.0.1:1/x/trivy-db:2"}},
		{"image unreachable", []string{"scan", te.Registry + "/scantest-none/x@sha256:" + strings.Repeat("1", 64)}, nil, exitFailure,
			nil, []string{"image", "unreachable"}},
		{"bad severity", []string{"scan", "--severity", "SEVERE", fx.Clean}, nil, exitFailure, nil, []string{`"SEVERE" is not allowed`}},
		{"bad output", []string{"scan", "-o", "xml", fx.Clean}, nil, exitFailure, nil, []string{"--output"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, stderr := gantry(t, append(append([]string{}, env...), c.env...), c.args...)
			if code != c.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.wantCode, out, stderr)
			}
			for _, w := range c.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.wantStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}

	t.Run("json, sarif and cyclonedx outputs", func(t *testing.T) {
		code, out, stderr := gantry(t, env, "scan", "-o", "json", "--sbom", sbomFile, fx.Vulnerable)
		if code != exitPolicy {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		doc, err := report.ReadJSON(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if doc.Verdict.Pass || doc.Verdict.Failed != 2 || len(doc.Findings) != 4 || doc.Image.Ref != fx.Vulnerable {
			t.Errorf("document %+v", doc)
		}
		var bom map[string]any
		if b, err := os.ReadFile(sbomFile); err != nil || json.Unmarshal(b, &bom) != nil || bom["bomFormat"] != "CycloneDX" {
			t.Errorf("--sbom file: %v %v", err, bom["bomFormat"])
		}

		code, out, _ = gantry(t, env, "scan", "-o", "sarif", fx.Vulnerable)
		log, err := sarif.FromString(out)
		if code != exitPolicy || err != nil || len(log.Runs) != 1 || len(log.Runs[0].Results) != 4 {
			t.Errorf("sarif: exit %d err %v", code, err)
		}

		code, out, _ = gantry(t, env, "scan", "-o", "cyclonedx", fx.Clean)
		if code != exitOK || !strings.Contains(out, `"bomFormat": "CycloneDX"`) || !strings.Contains(out, "base-files") {
			t.Errorf("cyclonedx: exit %d\n%s", code, out)
		}
	})
}
