package tokens_test

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/tokens"
)

func newStore(t *testing.T) (*tokens.Store, *time.Time) {
	t.Helper()
	s, err := tokens.Open(filepath.Join(t.TempDir(), "data", "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	return s, &now
}

func bearer(s *tokens.Store, tok string) (auth.Principal, error) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return s.Authenticate(r)
}

func TestLifecycle(t *testing.T) {
	s, now := newStore(t)
	if _, err := bearer(s, "gantry_0000000000000000_"+strings.Repeat("A", 43)); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("empty store: %v", err)
	}
	ci, rec, err := s.Create(tokens.CreateOptions{Name: "ci-bot", Scopes: []auth.Scope{auth.ScopeRunsWrite}, TTL: 30 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tokens.ParseToken(ci); !ok || id != rec.ID {
		t.Fatalf("token %q does not parse to id %s", ci, rec.ID)
	}
	reader, _, err := s.Create(tokens.CreateOptions{Name: "viewer", Scopes: []auth.Scope{auth.ScopeRunsRead}})
	if err != nil {
		t.Fatal(err)
	}
	// The file holds hashes only, and only its owner reads it.
	b, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), ci[len(tokens.Prefix)+17:]) || strings.Contains(string(b), reader[len(tokens.Prefix)+17:]) {
		t.Fatal("a token secret is stored in plain text")
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store mode: %v %v", fi, err)
	}
	// A second Store on the same file (the server, while the CLI creates
	// tokens) sees changes.
	server, _ := tokens.Open(s.Path())
	server.Now = s.Now

	tamper := []byte(ci)
	tamper[len(tamper)-2] ^= 1
	tests := []struct {
		name  string
		token string
		sub   string
		err   error
	}{
		{"ci", ci, "ci-bot", nil},
		{"reader", reader, "viewer", nil},
		{"tampered secret", string(tamper), "", auth.ErrUnauthenticated},
		{"other kind of token", "eyJhbGciOi.x.y", "", auth.ErrNoCredential},
		{"wrong length", ci + "x", "", auth.ErrUnauthenticated},
		{"upper-case id", ci[:7] + "A" + strings.ToUpper(ci[8:23]) + ci[23:], "", auth.ErrUnauthenticated},
	}
	for _, tc := range tests {
		p, err := bearer(server, tc.token)
		if p.Subject != tc.sub || (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("%s: %+v %v", tc.name, p, err)
		}
		if err != nil && strings.Contains(err.Error(), tc.token) {
			t.Errorf("%s: error echoes the token", tc.name)
		}
	}
	p, _ := bearer(server, ci)
	if !p.Allows(auth.ScopeRunsWrite) || p.Allows(auth.ScopeAdmin) || p.Method != "token" || p.CredentialID != rec.ID {
		t.Fatalf("principal %+v", p)
	}
	// Names are unique among active tokens.
	if _, _, err := s.Create(tokens.CreateOptions{Name: "ci-bot", Scopes: []auth.Scope{auth.ScopeRunsRead}}); err == nil {
		t.Fatal("duplicate active name accepted")
	}
	// Revoke by name: 401 from then on, still listed.
	if _, err := s.Revoke("viewer"); err != nil {
		t.Fatal(err)
	}
	if _, err := bearer(server, reader); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := s.Revoke("nobody"); err == nil {
		t.Fatal("revoking an unknown token succeeded")
	}
	// Expiry.
	*now = now.Add(30*24*time.Hour + time.Second)
	if _, err := bearer(server, ci); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	list, err := server.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	if list[0].State(*now) != "expired" || list[1].State(*now) != "revoked" {
		t.Fatalf("states: %s %s", list[0].State(*now), list[1].State(*now))
	}
	// The name of a revoked token can be reused.
	if _, _, err := s.Create(tokens.CreateOptions{Name: "viewer", Scopes: []auth.Scope{auth.ScopeRunsRead}}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateRejects(t *testing.T) {
	s, _ := newStore(t)
	for _, o := range []tokens.CreateOptions{
		{Name: "", Scopes: []auth.Scope{auth.ScopeAdmin}},
		{Name: "has space", Scopes: []auth.Scope{auth.ScopeAdmin}},
		{Name: "-dash", Scopes: []auth.Scope{auth.ScopeAdmin}},
		{Name: strings.Repeat("a", 65), Scopes: []auth.Scope{auth.ScopeAdmin}},
		{Name: "ok"},
		{Name: "ok", Scopes: []auth.Scope{"root"}},
		{Name: "ok", Scopes: []auth.Scope{auth.ScopeAdmin}, TTL: -time.Hour},
	} {
		if _, _, err := s.Create(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused create wrote the store")
	}
}

func TestConcurrentCreates(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Separate Store values: as separate processes would be.
			other, _ := tokens.Open(s.Path())
			_, _, err := other.Create(tokens.CreateOptions{Name: "bot" + string(rune('a'+i)), Scopes: []auth.Scope{auth.ScopeRunsRead}})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List()
	if err != nil || len(list) != 20 {
		t.Fatalf("%d tokens after 20 concurrent creates (%v): a write was lost", len(list), err)
	}
}

func TestCorruptStoreFailsClosed(t *testing.T) {
	s, _ := newStore(t)
	tok, _, err := s.Create(tokens.CreateOptions{Name: "a", Scopes: []auth.Scope{auth.ScopeAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	for _, content := range []string{"{", `{"version":2,"tokens":[]}`, `{"version":1,"tokens":[{"id":"x","hash":"md5:1"}]}`} {
		if err := os.WriteFile(s.Path(), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := bearer(s, tok); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%q: %v", content, err)
		}
		if _, _, err := s.Create(tokens.CreateOptions{Name: "b", Scopes: []auth.Scope{auth.ScopeAdmin}}); err == nil {
			t.Errorf("%q: create over a corrupt store succeeded", content)
		}
	}
}

func TestParseTTL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true}, {"never", 0, true}, {"30d", 30 * 24 * time.Hour, true}, {"12h", 12 * time.Hour, true},
		{"0d", 0, false}, {"-1d", 0, false}, {"xd", 0, false}, {"-5m", 0, false}, {"soon", 0, false}, {"99999d", 0, false},
	} {
		got, err := tokens.ParseTTL(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("%q: %v %v", tc.in, got, err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	dir := f.TempDir()
	s, _ := tokens.Open(filepath.Join(dir, "tokens.json"))
	tok, _, err := s.Create(tokens.CreateOptions{Name: "fuzz", Scopes: []auth.Scope{auth.ScopeRunsRead}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("gantry_")
	f.Add("gantry_" + tok[7:23] + "_" + strings.Repeat("-", 43))
	f.Fuzz(func(t *testing.T, in string) {
		p, err := s.Check(in)
		if err == nil && in != tok {
			t.Fatalf("%q authenticated as %+v", in, p)
		}
		if id, ok := tokens.ParseToken(in); ok && len(id) != 16 {
			t.Fatalf("id %q", id)
		}
	})
}
