package config

import (
	"strings"
	"testing"
	"time"
)

func TestAccessSections(t *testing.T) {
	d := Default()
	if err := d.Audit.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := d.Dashboard.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := d.Tokens.StorePath("/var/lib/gantry"); got != "/var/lib/gantry/tokens.json" {
		t.Fatal(got)
	}
	if got := (Tokens{Store: "/etc/gantry/t.json"}).StorePath("/d"); got != "/etc/gantry/t.json" {
		t.Fatal(got)
	}
	for in, want := range map[string]string{"": "/d/audit.jsonl", "-": "", "/x/a.log": "/x/a.log"} {
		if got := (Audit{File: in}).FilePath("/d"); got != want {
			t.Errorf("audit.file %q: %q", in, want)
		}
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"short retention", (&Audit{StreamMaxAge: time.Minute}).Validate(), "audit.streamMaxAge"},
		{"short session", (&Dashboard{SessionTTL: time.Second}).Validate(), "dashboard.sessionTTL"},
		{"long session", (&Dashboard{SessionTTL: 30 * 24 * time.Hour}).Validate(), "dashboard.sessionTTL"},
		{"commit url scheme", (&Dashboard{SessionTTL: time.Hour, CommitURL: "javascript:alert(1)//{repo}"}).Validate(), "dashboard.commitURL"},
	}
	for _, tc := range tests {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, tc.err)
		}
	}
}
