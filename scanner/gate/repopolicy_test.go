package gate

import (
	"strings"
	"testing"
	"time"
)

func TestCheckRepoIgnores(t *testing.T) {
	now := time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)
	def := RepoPolicy{Allowed: true, MaxExpiryDays: 90}
	file := func(entries string) []Ignore {
		t.Helper()
		igs, err := ParseIgnores([]byte("ignores:\n" + entries))
		if err != nil {
			t.Fatal(err)
		}
		return igs
	}
	cases := []struct {
		name    string
		pol     RepoPolicy
		entries string
		want    []string // substrings of the error; none: accepted
	}{
		{"within the bound", def, "  - {id: CVE-2099-0001, reason: r, expires: 2027-03-05}\n", nil},
		{"expiry one day too far", def, "  - {id: CVE-2099-0001, reason: r, expires: 2027-03-06}\n",
			[]string{"line 2", "CVE-2099-0001", "expires 2027-03-06", "scanner.repoIgnores.maxExpiryDays", "2027-03-05 or earlier"}},
		{"whole package until 2999", def, "  - {id: pkg:openssl, reason: r, expires: 2999-01-01}\n",
			[]string{"line 2", "pkg:openssl", "allowPackageWildcards: false", "expires 2999-01-01"}},
		{"package wildcard allowed by the server", RepoPolicy{Allowed: true, MaxExpiryDays: 90, AllowPackageWildcards: true},
			"  - {id: pkg:openssl, reason: r, expires: 2027-01-01}\n", nil},
		{"one id in one package is not a wildcard", def, "  - {id: CVE-2099-0002, package: openssl, reason: r, expires: 2027-01-01}\n", nil},
		{"every broken entry is named", def,
			"  - {id: CVE-2099-0001, reason: r, expires: 2027-01-01}\n  - {id: pkg:zlib, reason: r, expires: 2027-01-01}\n  - {id: CVE-2099-0003, reason: r, expires: 2030-01-01}\n",
			[]string{"line 3: pkg:zlib", "line 4: CVE-2099-0003"}},
		{"not allowed at all", RepoPolicy{}, "  - {id: CVE-2099-0001, reason: r, expires: 2026-12-31}\n",
			[]string{"scanner.repoIgnores.allowed: false", ".gantry/ignore.yaml"}},
		{"not allowed, empty file", RepoPolicy{}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.pol.CheckRepoIgnores(".gantry/ignore.yaml", file(c.entries), now)
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}
