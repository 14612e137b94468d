package config

import (
	"regexp"
	"strings"
	"testing"
)

// dns1123Oracle is the definition isDNS1123Label implements without a
// regexp (Kubernetes' label rule, length included).
var dns1123Oracle = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func TestIsDNS1123Label(t *testing.T) {
	for _, s := range []string{"", "a", "0", "-", "a-", "-a", "a-b", "fn", "Fn", "f_n", "f.n", "a--b",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "ä", "a\n", "functions-prod-2"} {
		if got, want := isDNS1123Label(s), dns1123Oracle.MatchString(s); got != want {
			t.Errorf("isDNS1123Label(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzIsDNS1123Label(f *testing.F) {
	for _, s := range []string{"fn", "a-b", strings.Repeat("z", 63), "-x", "X"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isDNS1123Label(s), dns1123Oracle.MatchString(s); got != want {
			t.Fatalf("isDNS1123Label(%q) = %v, want %v", s, got, want)
		}
	})
}
