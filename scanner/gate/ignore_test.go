package gate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseIgnores(t *testing.T) {
	good := `
ignores:
  - id: CVE-2099-0001
    reason: not reachable from the handler
    expires: 2026-12-31
  - id: CVE-2099-0002
    package: openssl
    reason: "vendor backport, see ticket 42"
    expires: "2027-01-15"
  - id: pkg:left-pad
    reason: removed in the next release
    expires: 2026-07-01
`
	igs, err := ParseIgnores([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(igs) != 3 {
		t.Fatalf("got %d entries", len(igs))
	}
	if igs[0].ID != "CVE-2099-0001" || igs[0].ExpiresString() != "2026-12-31" || igs[0].Line != 3 {
		t.Errorf("entry 0: %+v", igs[0])
	}
	if igs[1].Package != "openssl" || igs[1].Reason != "vendor backport, see ticket 42" || igs[1].ExpiresString() != "2027-01-15" {
		t.Errorf("entry 1: %+v", igs[1])
	}
	if name, ok := igs[2].PackageOnly(); !ok || name != "left-pad" {
		t.Errorf("entry 2: %+v", igs[2])
	}
	for _, empty := range []string{"", "# nothing\n", "ignores: []\n"} {
		igs, err := ParseIgnores([]byte(empty))
		if err != nil || len(igs) != 0 {
			t.Errorf("ParseIgnores(%q) = %v, %v", empty, igs, err)
		}
	}
}

func TestParseIgnoresRejects(t *testing.T) {
	cases := []struct {
		name, in, wantErr string
	}{
		{"no expiry", "ignores:\n  - id: CVE-1\n    reason: r\n", "line 2: entry needs expires"},
		{"no reason", "ignores:\n  - id: CVE-1\n    expires: 2026-01-01\n", "entry needs reason"},
		{"blank reason", "ignores:\n  - id: CVE-1\n    reason: '  '\n    expires: 2026-01-01\n", "entry needs reason"},
		{"no id", "ignores:\n  - reason: r\n    expires: 2026-01-01\n", "entry needs id"},
		{"unknown entry key", "ignores:\n  - id: CVE-1\n    reason: r\n    expires: 2026-01-01\n    until: 2027-01-01\n", "field until not found"},
		{"unknown top key", "ignore:\n  - id: CVE-1\n", "field ignore not found"},
		{"bad date", "ignores:\n  - id: CVE-1\n    reason: r\n    expires: 31/12/2026\n", "not a date"},
		{"date with time", "ignores:\n  - id: CVE-1\n    reason: r\n    expires: 2026-12-31T10:00:00Z\n", "not a date"},
		{"space in id", "ignores:\n  - id: CVE 1\n    reason: r\n    expires: 2026-01-01\n", "whitespace"},
		{"empty pkg", "ignores:\n  - id: 'pkg:'\n    reason: r\n    expires: 2026-01-01\n", "needs a package name"},
		{"pkg with package", "ignores:\n  - id: pkg:a\n    package: a\n    reason: r\n    expires: 2026-01-01\n", "only used with a vulnerability id"},
		{"duplicate", "ignores:\n  - id: CVE-1\n    reason: r\n    expires: 2026-01-01\n  - id: cve-1\n    reason: s\n    expires: 2026-02-01\n", "line 5: duplicate of the entry on line 2"},
		{"not a mapping", "- id: CVE-1\n", "expected a mapping"},
		{"two documents", "ignores: []\n---\nignores: []\n", "more than one YAML document"},
		{"wrong type", "ignores: yes\n", "cannot unmarshal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseIgnores([]byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, c.wantErr)
			}
		})
	}
}

func TestLoadIgnoreFileBounds(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("ignores: []\n"+strings.Repeat("#", MaxIgnoreFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIgnoreFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: %v", err)
	}
	if _, err := LoadIgnoreFile(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "ignore file") {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParseIgnores(f *testing.F) {
	f.Add([]byte("ignores:\n  - id: CVE-2099-0001\n    reason: r\n    expires: 2026-12-31\n"))
	f.Add([]byte("ignores:\n  - id: pkg:x\n    reason: r\n    expires: 2026-12-31\n  - {id: a, reason: b, expires: 2020-01-01, package: c}\n"))
	f.Add([]byte("ignores: [&a {id: x}, *a]\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		igs, err := ParseIgnores(b)
		if err != nil {
			return
		}
		for _, ig := range igs {
			if ig.ID == "" || ig.Reason == "" || ig.Expires.IsZero() {
				t.Fatalf("accepted an incomplete entry: %+v", ig)
			}
		}
	})
}
