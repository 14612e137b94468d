package repoconfig

import (
	"strings"
	"testing"
)

func TestRollbackSetting(t *testing.T) {
	const fns = "version: 1\nfunctions:\n  - name: hello\n    image: registry.example/hello\n"
	for _, c := range []struct {
		line  string
		allow bool
		err   string
	}{
		{"", false, ""},
		{"rollback: allow\n", true, ""},
		{"rollback: refuse\n", false, ""},
		{"rollback: yes\n", false, "want allow or refuse"},
	} {
		r, err := ParseGantry([]byte(c.line + fns))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %v, want %q", c.line, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if r.Overrides.RollbackAllowed() != c.allow {
			t.Errorf("%q: allowed %v", c.line, r.Overrides.RollbackAllowed())
		}
	}
}
