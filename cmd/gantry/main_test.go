package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/cmdtable"
	"github.com/gantry-dev/gantry/internal/version"
)

func front(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, env, func(path string, _, _ []string) error {
		t.Fatalf("exec %s: the front must answer %q itself", path, args)
		return nil
	})
	return code, out.String(), errb.String()
}

// Every command's help comes from the table, which cmd/gantry-core's
// TestFrontCommandTable keeps equal to what cobra prints there.
func TestHelpFromTheTable(t *testing.T) {
	tab, err := cmdtable.Parse(commandsJSON)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"", "verify", "policy check", "scan", "token create"} {
		if _, ok := tab.Commands[want]; !ok {
			t.Fatalf("the table has no %q", want)
		}
	}
	for path, c := range tab.Commands {
		words := strings.Fields(path)
		for _, args := range [][]string{append(words, "--help"), append([]string{"help"}, words...), append([]string{"--log-level", "debug"}, append(words, "-h")...)} {
			code, out, stderr := front(t, nil, args...)
			if code != exitOK || out != c.Help || stderr != "" {
				t.Errorf("gantry %s: exit %d, stderr %q, help equal to the table's: %v", strings.Join(args, " "), code, stderr, out == c.Help)
			}
		}
	}
	if code, out, _ := front(t, nil); code != exitOK || out != tab.Commands[""].Help {
		t.Errorf("gantry alone: exit %d, want the root help", code)
	}
}

func TestVersion(t *testing.T) {
	v := version.Get()
	code, out, stderr := front(t, nil, "version")
	if code != exitOK || out != v.String()+"\n" || stderr != "" {
		t.Fatalf("version: exit %d, %q, %q", code, out, stderr)
	}
	code, out, _ = front(t, nil, "version", "--output", "json")
	var got version.Info
	if err := json.Unmarshal([]byte(out), &got); code != exitOK || err != nil || got != v {
		t.Fatalf("version -o json: exit %d, %q (%v)", code, out, err)
	}
}

// The process tests build the front and put stand-ins for the role
// binaries beside it: each prints its own name and arguments and exits 7.
func buildFront(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gantry")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func standIn(t *testing.T, dir, role string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"" + role + "\" \"$@\"\nexit 7\n"
	if err := os.WriteFile(filepath.Join(dir, "gantry-"+role), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func runFront(t *testing.T, bin string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

func TestRolesRunInPlaceOfTheFront(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := buildFront(t, dir)
	for _, r := range []string{"core", "admission", "build", "policy"} {
		standIn(t, dir, r)
	}
	env := []string{"PATH=/usr/bin:/bin"}
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		// Arguments reach the role binary unchanged, flags and all.
		{[]string{"--config", "c.yaml", "verify", "img@sha256:1", "-o", "json"}, nil, "admission --config c.yaml verify img@sha256:1 -o json"},
		// An offline check runs in gantry-policy; one that needs the
		// registry, or that the table cannot read, in gantry-admission.
		{[]string{"policy", "check", "-f", "-", "--offline"}, nil, "policy policy check -f - --offline"},
		{[]string{"policy", "check", "-f", "-"}, nil, "admission policy check -f -"},
		{[]string{"policy", "check", "-f", "-", "--offline=false"}, nil, "admission policy check -f - --offline=false"},
		{[]string{"lint", "Dockerfile"}, nil, "build lint Dockerfile"},
		{[]string{"scan", "img"}, nil, "core scan img"},
		{[]string{"serve", "--config", "x"}, nil, "core serve --config x"},
		// What the table cannot read with certainty goes to a role binary.
		{[]string{"verify", "--no-such-flag", "--help"}, nil, "admission verify --no-such-flag --help"},
		{[]string{"no-such-command"}, nil, "core no-such-command"},
		{[]string{"policy", "chek"}, nil, "admission policy chek"},
		// version reads configuration there when given some, so that a
		// broken one fails the same way.
		{[]string{"version", "--config", "c.yaml"}, nil, "core version --config c.yaml"},
		{[]string{"version"}, []string{"GANTRY_LOG_FORMAT=xml"}, "core version"},
		{[]string{"version"}, []string{"GANTRY_CONFIG=c.yaml"}, "core version"},
		{[]string{"version", "-o", "yaml"}, nil, "core version -o yaml"},
	} {
		code, out, stderr := runFront(t, bin, append(env, tc.env...), tc.args...)
		if code != 7 || strings.TrimSpace(out) != tc.want {
			t.Errorf("gantry %s: exit %d, stdout %q (want %q), stderr %q", strings.Join(tc.args, " "), code, out, tc.want, stderr)
		}
	}
	// Help and version never start a role binary, whatever GANTRY_*
	// variables that are no configuration key say.
	if code, out, _ := runFront(t, bin, append(env, "GANTRY_TESTENV=/x"), "version"); code != 0 || !strings.HasPrefix(out, "gantry ") {
		t.Errorf("version with GANTRY_TESTENV set: exit %d, %q", code, out)
	}
	if code, out, _ := runFront(t, bin, env, "verify", "--help"); code != 0 || !strings.Contains(out, "Usage:\n  gantry verify IMAGE") {
		t.Errorf("verify --help: exit %d, %q", code, out)
	}

	// Reached through a symlink, the front still finds its role binaries.
	other := t.TempDir()
	link := filepath.Join(other, "gantry")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runFront(t, link, env, "lint", "x"); code != 7 || strings.TrimSpace(out) != "build lint x" {
		t.Errorf("through a symlink: exit %d, %q", code, out)
	}

	// Without its role binary, a command runs in gantry-core, which has
	// every command; without either, a clear error, exit 2.
	if err := os.Remove(filepath.Join(dir, "gantry-build")); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runFront(t, bin, env, "lint", "x"); code != 7 || strings.TrimSpace(out) != "core lint x" {
		t.Errorf("no gantry-build: exit %d, %q", code, out)
	}
	if err := os.Remove(filepath.Join(dir, "gantry-core")); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runFront(t, bin, env, "lint", "x")
	if code != 2 || out != "" || !strings.Contains(stderr, "gantry-build or gantry-core, which is not installed beside "+bin) {
		t.Errorf("no role binary: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// A gantry-core elsewhere on PATH does not stand in for it.
	pathDir := t.TempDir()
	standIn(t, pathDir, "core")
	if code, out, _ := runFront(t, bin, []string{"PATH=" + pathDir + ":/usr/bin:/bin"}, "lint", "x"); code != 2 || out != "" {
		t.Errorf("gantry-core from PATH ran: exit %d, %q", code, out)
	}
}

// The packaged layout: bin/gantry with its role binaries in libexec/gantry.
func TestRolesInLibexec(t *testing.T) {
	t.Parallel()
	prefix := t.TempDir()
	bin := buildFront(t, filepath.Join(prefix, "bin"))
	standIn(t, filepath.Join(prefix, "libexec", "gantry"), "admission")
	if code, out, _ := runFront(t, bin, nil, "verify", "img"); code != 7 || strings.TrimSpace(out) != "admission verify img" {
		t.Errorf("libexec layout: exit %d, %q", code, out)
	}
}
