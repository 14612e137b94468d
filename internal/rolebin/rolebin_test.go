package rolebin

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestFindNarrowestInstalled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		installed []string // paths under the prefix
		role      string
		want      string // "" for an error
	}{
		{"own binary", []string{"bin/gantry-policy", "bin/gantry-admission", "bin/gantry-core"}, Policy, "bin/gantry-policy"},
		{"policy falls back to admission", []string{"bin/gantry-admission", "bin/gantry-core"}, Policy, "bin/gantry-admission"},
		{"then to core", []string{"bin/gantry-core"}, Policy, "bin/gantry-core"},
		{"libexec", []string{"libexec/gantry/gantry-build"}, Build, "libexec/gantry/gantry-build"},
		{"beside before libexec", []string{"libexec/gantry/gantry-build", "bin/gantry-build"}, Build, "bin/gantry-build"},
		{"build never runs in admission", []string{"bin/gantry-admission"}, Build, ""},
		{"admission never runs in policy", []string{"bin/gantry-policy"}, Admission, ""},
		{"not executable", []string{"bin/gantry-core:0644"}, Core, ""},
		{"nothing", nil, Policy, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, p := range append([]string{"bin/gantry"}, tc.installed...) {
				p, mode, _ := strings.Cut(p, ":")
				perm := os.FileMode(0o755)
				if mode == "0644" {
					perm = 0o644
				}
				full := filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(full, nil, perm); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Find(filepath.Join(dir, "bin", "gantry"), tc.role)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "not installed") {
					t.Fatalf("Find = %q, %v; want a not-installed error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, tc.want); filepath.Clean(got) != want {
				t.Fatalf("Find = %q, want %q", got, want)
			}
		})
	}
}

func TestImplements(t *testing.T) {
	for _, role := range []string{Core, Admission, Build, Policy} {
		if !Implements(Core, role) || !Implements(role, role) {
			t.Errorf("%s: core and its own binary must implement it", role)
		}
	}
	if !Implements(Admission, Policy) || Implements(Policy, Admission) || Implements(Build, Policy) || Implements(Admission, Build) {
		t.Error("only admission is wider than policy")
	}
	if c := Candidates(Policy); !slices.Equal(c, []string{Policy, Admission, Core}) {
		t.Errorf("Candidates(policy) = %v", c)
	}
}
