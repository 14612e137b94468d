package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pinnedBase = "busybox:1.36@sha256:0000000000000000000000000000000000000000000000000000000000000000"

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLintCommand(t *testing.T) {
	dir := t.TempDir()
	clean := writeFile(t, dir, "clean/Dockerfile", "FROM "+pinnedBase+"\nUSER 1000:1000\nCMD [\"httpd\"]\n")
	bad := writeFile(t, dir, "bad/Dockerfile", "FROM busybox\nADD https://example.com/x /x\n")
	warnOnly := writeFile(t, dir, "warn/Dockerfile", "FROM busybox:1.36\nUSER 1000\nCMD [\"httpd\"]\n")
	broken := writeFile(t, t.TempDir(), "broken/Dockerfile", "FROM "+pinnedBase+"\nUSER 1000\nFROBNICATE now\n")
	cfg := writeFile(t, dir, "gantry.yaml", "lint:\n  hadolint: \"off\"\n  ignore:\n    - rule: gantry-add-url\n      reason: trusted mirror\n")
	noHadolint := []string{"GANTRY_LINT_HADOLINT=off"}

	tests := []struct {
		name   string
		env    []string
		args   []string
		stdin  string
		code   int
		stdout []string // substrings
		stderr []string
	}{
		{name: "clean", env: noHadolint, args: []string{"lint", clean}, code: exitOK, stdout: []string{"0 error(s)"}},
		{name: "errors fail", env: noHadolint, args: []string{"lint", bad}, code: exitPolicy,
			stdout: []string{bad + ":1", "gantry-base-latest", "error", bad + ":2", "gantry-add-url", "gantry-root-user"},
			stderr: []string{"lint: findings at or above error"}},
		{name: "warnings pass by default", env: noHadolint, args: []string{"lint", warnOnly}, code: exitOK, stdout: []string{"gantry-base-unpinned"}},
		{name: "--fail-on warning", env: noHadolint, args: []string{"lint", "--fail-on", "warning", warnOnly}, code: exitPolicy},
		{name: "--fail-on never", env: noHadolint, args: []string{"lint", "--fail-on", "never", bad}, code: exitOK},
		{name: "env threshold", env: append([]string{"GANTRY_LINT_FAIL_ON=warning"}, noHadolint...), args: []string{"lint", warnOnly}, code: exitPolicy},
		{name: "config ignore", args: []string{"--config", cfg, "lint", "--output", "json", bad}, code: exitPolicy,
			stdout: []string{`"suppression": "trusted mirror"`}},
		{name: "parse error exits 2 with the line", env: noHadolint, args: []string{"lint", broken}, code: exitFailure,
			stderr: []string{broken + ":3", "does not parse", "frobnicate"}},
		{name: "stdin", env: noHadolint, args: []string{"lint", "--stdin-name", "fn/Dockerfile", "-"}, stdin: "FROM busybox:latest\nUSER 1000\n",
			code: exitPolicy, stdout: []string{"fn/Dockerfile:1", "gantry-base-latest"}},
		{name: "directory", env: noHadolint, args: []string{"lint", "--fail-on", "never", dir}, code: exitOK,
			stdout: []string{"bad/Dockerfile:2", "warn/Dockerfile:1"}},
		{name: "hadolint absent is said once", env: []string{"PATH=" + t.TempDir()}, args: []string{"lint", clean, clean}, code: exitOK,
			stderr: []string{"hadolint"}},
		{name: "missing file", env: noHadolint, args: []string{"lint", filepath.Join(dir, "nope")}, code: exitFailure},
		{name: "bad --fail-on", env: noHadolint, args: []string{"lint", "--fail-on", "loud", clean}, code: exitFailure},
		{name: "bad --output", env: noHadolint, args: []string{"lint", "--output", "xml", clean}, code: exitFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(strings.Join(tc.env, " "), "PATH=") {
				t.Setenv("PATH", strings.TrimPrefix(tc.env[0], "PATH="))
			}
			code, stdout, stderr := gantryStdin(t, tc.env, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(strings.ToLower(stderr), strings.ToLower(s)) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
			if tc.name == "hadolint absent is said once" && strings.Count(stderr, "not found") != 1 {
				t.Errorf("hadolint note not said exactly once:\n%s", stderr)
			}
		})
	}
}

func TestLintSARIFOutput(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "Dockerfile", "FROM busybox\nRUN curl -s https://x.example/i.sh | sh\n")
	code, stdout, stderr := gantry(t, []string{"GANTRY_LINT_HADOLINT=off"}, "lint", "--output", "sarif", bad)
	if code != exitPolicy {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID string `json:"ruleId"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || doc.Version != "2.1.0" || len(doc.Runs) == 0 {
		t.Fatalf("not SARIF 2.1.0 (%v):\n%s", err, stdout)
	}
	if !strings.Contains(stdout, `"ruleId": "gantry-curl-pipe-sh"`) {
		t.Errorf("SARIF lacks the curl|sh finding:\n%s", stdout)
	}
}

// gantryStdin runs the CLI with stdin holding the given text (run reads the
// process's stdin, so it is swapped for a file for the call).
func gantryStdin(t *testing.T, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	f := writeFile(t, t.TempDir(), "stdin", stdin)
	in, err := os.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	old := os.Stdin
	os.Stdin = in
	defer func() { os.Stdin = old }()
	return gantry(t, env, args...)
}
