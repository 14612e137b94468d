package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/internal/version"
)

// gantry runs the CLI in process and returns exit code, stdout and stderr.
func gantry(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, env)
	return code, out.String(), errb.String()
}

func TestVersionJSON(t *testing.T) {
	code, out, stderr := gantry(t, nil, "version", "--output", "json")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var v version.Info
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if v.GoVersion != runtime.Version() || v.Version == "" || v.Commit == "" {
		t.Fatalf("version info: %+v", v)
	}
}

func TestVersionText(t *testing.T) {
	code, out, _ := gantry(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(out, "gantry ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("exit %d, output %q", code, out)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"no-such-command"},
		{"version", "--no-such-flag"},
		{"version", "--output", "xml"},
		{"version", "extra-arg"},
		{"version", "--log-level", "loud"},
	} {
		code, _, stderr := gantry(t, nil, args...)
		if code != exitFailure {
			t.Errorf("%v: exit %d, want %d", args, code, exitFailure)
		}
		if !strings.HasPrefix(stderr, "gantry: ") {
			t.Errorf("%v: stderr %q does not say what went wrong", args, stderr)
		}
	}
}

func TestConfigFileAndEnvAreRead(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("log:\n  colour: red\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// --config names the file...
	code, _, stderr := gantry(t, nil, "--config", bad, "version")
	if code != exitFailure || !strings.Contains(stderr, "unknown key log.colour") {
		t.Fatalf("--config: exit %d, %q", code, stderr)
	}
	// ...and so does GANTRY_CONFIG.
	code, _, stderr = gantry(t, []string{"GANTRY_CONFIG=" + bad}, "version")
	if code != exitFailure || !strings.Contains(stderr, "unknown key log.colour") {
		t.Fatalf("GANTRY_CONFIG: exit %d, %q", code, stderr)
	}
	// An environment value is validated like a file value.
	code, _, stderr = gantry(t, []string{"GANTRY_LOG_FORMAT=xml"}, "version")
	if code != exitFailure || !strings.Contains(stderr, "log.format") {
		t.Fatalf("GANTRY_LOG_FORMAT: exit %d, %q", code, stderr)
	}
	// The flag wins over the environment.
	code, _, stderr = gantry(t, []string{"GANTRY_LOG_FORMAT=xml"}, "--log-format", "json", "version")
	if code != exitOK {
		t.Fatalf("flag over env: exit %d, %q", code, stderr)
	}
}
