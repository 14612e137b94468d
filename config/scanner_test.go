package config

import (
	"strings"
	"testing"
	"time"
)

func TestScannerDefaultsValid(t *testing.T) {
	s := DefaultScanner()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if !s.OnlyFixed || strings.Join(s.Severities, ",") != "CRITICAL,HIGH" {
		t.Fatalf("defaults are not the secure choice: %+v", s)
	}
}

func TestScannerValidate(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*Scanner)
		wantErr string
	}{
		{"server URL without scheme", func(s *Scanner) { s.Server = "trivy:4954" }, "must be an http(s) URL"},
		{"token without server", func(s *Scanner) { s.ServerTokenFile = "/run/token" }, "scanner.server is empty"},
		{"no DB repository in embedded mode", func(s *Scanner) { s.DBRepositories = nil }, "at least one repository"},
		{"no severities", func(s *Scanner) { s.Severities = nil }, "at least one severity"},
		{"refresh not shorter than max age", func(s *Scanner) { s.DBRefreshInterval = 72 * time.Hour }, "must be shorter than scanner.dbMaxAge"},
		{"zero timeout", func(s *Scanner) { s.Timeout = 0 }, "scanner.timeout must be positive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := DefaultScanner()
			c.mutate(&s)
			if err := s.Validate(); err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want %q", err, c.wantErr)
			}
		})
	}
	// A server needs no DB repositories of its own.
	s := DefaultScanner()
	s.Server, s.DBRepositories = "https://trivy.example:4954", nil
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestScannerFromFileAndEnv(t *testing.T) {
	file := writeFile(t, "scanner:\n  severities: [CRITICAL]\n  onlyFixed: false\n  dbMaxAge: 96h\n")
	cfg, err := Load(Source{File: file, Env: []string{"GANTRY_SCANNER_DB_REPOSITORIES=mirror.local/trivy-db:2,backup.local/trivy-db:2", "GANTRY_SCANNER_JAVA_DB_REPOSITORIES="}})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Scanner
	if strings.Join(s.Severities, ",") != "CRITICAL" || s.OnlyFixed || s.DBMaxAge != 96*time.Hour ||
		len(s.DBRepositories) != 2 || len(s.JavaDBRepositories) != 0 {
		t.Fatalf("got %+v", s)
	}
	if _, err := Load(Source{File: writeFile(t, "scanner:\n  severities: [SEVERE]\n")}); err == nil || !strings.Contains(err.Error(), "scanner.severities") {
		t.Fatalf("bad severity: %v", err)
	}
}
