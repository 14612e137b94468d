package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gantry.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsWithoutFile(t *testing.T) {
	cfg, err := Load(Source{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Log.Level != "info" || cfg.Log.Format != "text" {
		t.Fatalf("defaults: %+v", cfg.Log)
	}
}

func TestPrecedenceFlagOverEnvOverFileOverDefault(t *testing.T) {
	file := writeFile(t, "log:\n  level: warn\n  format: json\n")
	cases := []struct {
		name       string
		env        []string
		flags      map[string]string
		wantLevel  string
		wantFormat string
	}{
		{"file over default", nil, nil, "warn", "json"},
		{"env over file", []string{"GANTRY_LOG_LEVEL=error", "UNRELATED=x"}, nil, "error", "json"},
		{"flag over env", []string{"GANTRY_LOG_LEVEL=error"}, map[string]string{"log.level": "debug"}, "debug", "json"},
		{"env for another key", []string{"GANTRY_LOG_FORMAT=text"}, nil, "warn", "text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Load(Source{File: file, Env: c.env, Flags: c.flags})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Log.Level != c.wantLevel || cfg.Log.Format != c.wantFormat {
				t.Fatalf("got %+v, want level=%s format=%s", cfg.Log, c.wantLevel, c.wantFormat)
			}
		})
	}
}

func TestRejectsWithClearErrors(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		env     []string
		flags   map[string]string
		wantAll []string
	}{
		{"unknown top-level key", "log:\n  level: info\nlogs: {}\n", nil, nil,
			[]string{":3:", "unknown key logs", "allowed under the top level: ", "log"}},
		{"unknown nested key", "log:\n  levle: info\n", nil, nil,
			[]string{":2:", "unknown key log.levle", "allowed under log: format, level"}},
		{"bad value in file", "log:\n  level: loud\n", nil, nil,
			[]string{"key log.level", `"loud" is not allowed`, "debug, info, warn, error"}},
		{"bad value in env", "", []string{"GANTRY_LOG_FORMAT=xml"}, nil,
			[]string{"key log.format", `"xml"`, "text, json"}},
		{"bad value in flag", "", nil, map[string]string{"log.level": "trace"},
			[]string{"key log.level", `"trace"`}},
		{"section not a mapping", "log: 3\n", nil, nil, []string{"key log must be a mapping"}},
		{"malformed yaml", "log: [\n", nil, nil, []string{"gantry.yaml"}},
		{"two documents", "log: {}\n---\nlog: {}\n", nil, nil, []string{"more than one YAML document"}},
		{"flag for unknown key", "", nil, map[string]string{"nope": "x"}, []string{`unknown key "nope"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := Source{Env: c.env, Flags: c.flags}
			if c.file != "" {
				src.File = writeFile(t, c.file)
			}
			_, err := Load(src)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, want := range c.wantAll {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		})
	}
}

func TestMissingAndOversizedFile(t *testing.T) {
	if _, err := Load(Source{File: filepath.Join(t.TempDir(), "absent.yaml")}); err == nil {
		t.Fatal("missing file accepted")
	}
	big := writeFile(t, "# "+strings.Repeat("x", MaxFileSize)+"\n")
	if _, err := Load(Source{File: big}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: %v", err)
	}
}

func TestEnvNames(t *testing.T) {
	names := EnvNames()
	if names["GANTRY_LOG_LEVEL"] != "log.level" || names["GANTRY_LOG_FORMAT"] != "log.format" {
		t.Fatalf("EnvNames() = %v", names)
	}
	if got := (leaf{path: "admission.requireDigest"}).envName(); got != "GANTRY_ADMISSION_REQUIRE_DIGEST" {
		t.Fatalf("envName = %s", got)
	}
}

func TestExampleFileLoads(t *testing.T) {
	if _, err := Load(Source{File: "../examples/gantry.yaml"}); err != nil {
		t.Fatalf("examples/gantry.yaml: %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("log:\n  level: info\n")
	f.Add("log: [1, 2]\n")
	f.Add("{a: {b: c}}")
	f.Fuzz(func(t *testing.T, content string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(Source{File: p})
		if err == nil && (cfg.Log.Level == "" || cfg.Log.Format == "") {
			t.Fatalf("accepted config with empty required values: %+v", cfg.Log)
		}
	})
}
