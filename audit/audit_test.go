package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/audit/audittest"
	"github.com/gantry-dev/gantry/auth"
)

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit", "audit.jsonl")
	l, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := auth.Principal{Subject: "ci-bot", Scopes: []auth.Scope{auth.ScopeRunsWrite}, Method: "token", CredentialID: "0123456789abcdef"}
	ctx := context.Background()
	events := []audit.Event{
		audit.ByPrincipal(audit.Event{Action: audit.ActionRunCancel, Target: "run1", Details: map[string]string{
			"repo": "acme/a", "password": "hunter2", "githubToken": "ghp_x", "tokenId": "0123", "signingKey": "k",
		}}, p),
		{Action: audit.ActionPolicyReload, Reason: strings.Repeat("r", 2000)},
	}
	for _, e := range events {
		if err := l.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Concurrent writers never interleave lines.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(ctx, audit.Event{Action: audit.ActionTokenCreate, Target: strings.Repeat(string(rune('a'+i%26)), 300)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Re-opening appends; nothing is truncated.
	l2, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Record(ctx, audit.Event{Action: audit.ActionConfigReload}); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}

	got := audittest.ReadFile(t, path)
	if len(got) != 53 {
		t.Fatalf("%d records, want 53", len(got))
	}
	c := got[0]
	if c.Actor != "ci-bot" || c.Method != "token" || c.CredentialID != "0123456789abcdef" || c.Outcome != "ok" || c.Time.IsZero() {
		t.Fatalf("cancel record %+v", c)
	}
	if c.Details["repo"] != "acme/a" || c.Details["tokenId"] != "0123" {
		t.Fatalf("details %v", c.Details)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "ghp_x", `"k"`} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("secret %q in the audit log", secret)
		}
	}
	if got[1].Actor != "gantry" || len(got[1].Reason) > 600 {
		t.Fatalf("reload record %+v", got[1])
	}
	if got[52].Action != audit.ActionConfigReload {
		t.Fatalf("last record %+v", got[52])
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode: %v %v", fi, err)
	}
}
