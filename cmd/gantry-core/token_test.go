package main

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/tokens"
)

func TestTokenCommands(t *testing.T) {
	dir := t.TempDir()
	env := []string{"GANTRY_QUEUE_DATA_DIR=" + dir}
	code, out, stderr := gantry(t, env, "token", "create", "--name", "ci", "--scope", "runs:read,runs:write", "--expires", "30d", "-o", "json")
	if code != exitOK {
		t.Fatalf("create: %d %s", code, stderr)
	}
	var c tokenCreated
	if err := json.Unmarshal([]byte(out), &c); err != nil || !strings.HasPrefix(c.Token, tokens.Prefix) || c.ExpiresAt == nil || len(c.Scopes) != 2 {
		t.Fatalf("create output %q %v", out, err)
	}
	store, _ := tokens.Open(filepath.Join(dir, "tokens.json"))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+c.Token)
	if p, err := store.Authenticate(r); err != nil || p.Subject != "ci" {
		t.Fatalf("created token does not authenticate: %+v %v", p, err)
	}
	code, out, _ = gantry(t, env, "token", "list")
	if code != exitOK || !strings.Contains(out, c.ID) || !strings.Contains(out, "active") || strings.Contains(out, c.Token[24:]) {
		t.Fatalf("list: %d %q", code, out)
	}
	if code, out, _ = gantry(t, env, "token", "revoke", c.ID); code != exitOK || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %q", code, out)
	}
	if _, err := store.Authenticate(r); err == nil {
		t.Fatal("revoked token still authenticates")
	}
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if strings.Count(string(audit), "\n") != 2 || !strings.Contains(string(audit), `"token.revoke"`) || strings.Contains(string(audit), c.Token) {
		t.Fatalf("audit log:\n%s", audit)
	}
	for _, args := range [][]string{
		{"token", "create", "--name", "x"},
		{"token", "create", "--name", "x", "--scope", "root"},
		{"token", "create", "--name", "x", "--scope", "admin", "--expires", "soon"},
		{"token", "create", "--name", "bad name", "--scope", "admin"},
		{"token", "revoke", "nobody"},
		{"token", "revoke"},
	} {
		if code, _, stderr := gantry(t, env, args...); code != exitFailure || !strings.HasPrefix(stderr, "gantry: ") {
			t.Errorf("%v: exit %d %q", args, code, stderr)
		}
	}
}
