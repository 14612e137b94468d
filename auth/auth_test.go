package auth_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/auth"
)

func TestAllows(t *testing.T) {
	tests := []struct {
		held []auth.Scope
		want auth.Scope
		ok   bool
	}{
		{[]auth.Scope{auth.ScopeRunsRead}, auth.ScopeRunsRead, true},
		{[]auth.Scope{auth.ScopeRunsRead}, auth.ScopeRunsWrite, false},
		{[]auth.Scope{auth.ScopeRunsRead}, auth.ScopeAdmin, false},
		{[]auth.Scope{auth.ScopeRunsWrite}, auth.ScopeRunsRead, true},
		{[]auth.Scope{auth.ScopeRunsWrite}, auth.ScopeRunsWrite, true},
		{[]auth.Scope{auth.ScopeRunsWrite}, auth.ScopeAdmin, false},
		{[]auth.Scope{auth.ScopeAdmin}, auth.ScopeRunsWrite, true},
		{[]auth.Scope{auth.ScopeAdmin}, auth.ScopeAdmin, true},
		{nil, auth.ScopeRunsRead, false},
		{[]auth.Scope{"bogus"}, auth.ScopeRunsRead, false},
		{[]auth.Scope{auth.ScopeRunsRead, auth.ScopeAdmin}, auth.ScopeAdmin, true},
	}
	for _, tc := range tests {
		p := auth.Principal{Subject: "x", Scopes: tc.held}
		if got := p.Allows(tc.want); got != tc.ok {
			t.Errorf("%v allows %s = %v, want %v", tc.held, tc.want, got, tc.ok)
		}
	}
}

func TestParseScope(t *testing.T) {
	for _, s := range []string{"runs:read", "runs:write", "admin"} {
		if got, err := auth.ParseScope(s); err != nil || string(got) != s {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	for _, s := range []string{"", "Admin", "runs", "runs:*", "admin "} {
		if _, err := auth.ParseScope(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Bearer ", "", false},
		{"Basic abc", "", false},
		{"abc", "", false},
		{"", "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", tc.header)
		tok, ok := auth.BearerToken(r)
		if tok != tc.token || ok != tc.ok {
			t.Errorf("%q: %q %v", tc.header, tok, ok)
		}
	}
}

func fixed(p auth.Principal, err error) auth.Authenticator {
	return auth.AuthenticatorFunc(func(*http.Request) (auth.Principal, error) { return p, err })
}

func TestChain(t *testing.T) {
	alice := auth.Principal{Subject: "alice", Scopes: []auth.Scope{auth.ScopeRunsRead}, Method: "token"}
	tests := []struct {
		name    string
		chain   auth.Chain
		subject string
		err     error
	}{
		{"empty", auth.Chain{}, "", auth.ErrNoCredential},
		{"nil entry skipped", auth.Chain{nil, fixed(alice, nil)}, "alice", nil},
		{"none saw a credential", auth.Chain{fixed(auth.Principal{}, auth.ErrNoCredential)}, "", auth.ErrNoCredential},
		{"second matches", auth.Chain{fixed(auth.Principal{}, auth.ErrUnauthenticated), fixed(alice, nil)}, "alice", nil},
		{"invalid beats none", auth.Chain{fixed(auth.Principal{}, auth.ErrUnauthenticated), fixed(auth.Principal{}, auth.ErrNoCredential)}, "", auth.ErrUnauthenticated},
		{"scopeless principal refused", auth.Chain{fixed(auth.Principal{Subject: "x"}, nil)}, "", auth.ErrUnauthenticated},
		{"anonymous principal refused", auth.Chain{fixed(auth.Principal{Scopes: []auth.Scope{auth.ScopeAdmin}}, nil)}, "", auth.ErrUnauthenticated},
	}
	for _, tc := range tests {
		p, err := tc.chain.Authenticate(httptest.NewRequest("GET", "/", nil))
		if p.Subject != tc.subject || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: %+v %v", tc.name, p, err)
		}
	}
}

func TestMiddlewareAndRequire(t *testing.T) {
	reader := auth.Principal{Subject: "reader", Scopes: []auth.Scope{auth.ScopeRunsRead}}
	writer := auth.Principal{Subject: "writer", Scopes: []auth.Scope{auth.ScopeRunsWrite}}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := auth.FromContext(r.Context())
		_, _ = w.Write([]byte("hello " + p.Subject))
	})
	tests := []struct {
		name  string
		a     auth.Authenticator
		scope auth.Scope
		code  int
		body  string
	}{
		{"no credential", fixed(auth.Principal{}, auth.ErrNoCredential), auth.ScopeRunsRead, 401, "bearer token is required"},
		{"bad credential", fixed(auth.Principal{}, auth.ErrUnauthenticated), auth.ScopeRunsRead, 401, "expired or revoked"},
		{"error text not echoed", fixed(auth.Principal{}, errors.New("secret-ish detail")), auth.ScopeRunsRead, 401, "bearer token is required"},
		{"reader reads", fixed(reader, nil), auth.ScopeRunsRead, 200, "hello reader"},
		{"reader cannot write", fixed(reader, nil), auth.ScopeRunsWrite, 403, "needs the runs:write scope; reader has runs:read"},
		{"writer writes", fixed(writer, nil), auth.ScopeRunsWrite, 200, "hello writer"},
		{"writer is no admin", fixed(writer, nil), auth.ScopeAdmin, 403, "admin"},
	}
	for _, tc := range tests {
		h := auth.Middleware(tc.a, nil)(auth.Require(tc.scope, nil, ok))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s: %d %q", tc.name, rec.Code, rec.Body.String())
		}
		if strings.Contains(rec.Body.String(), "secret-ish") {
			t.Errorf("%s: authenticator error leaked: %q", tc.name, rec.Body.String())
		}
		if tc.code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
		if tc.code == 403 && !strings.Contains(rec.Header().Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%s: 403 without insufficient_scope", tc.name)
		}
	}
	// Require without Middleware fails closed.
	rec := httptest.NewRecorder()
	auth.Require(auth.ScopeRunsRead, nil, ok).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 401 {
		t.Fatalf("Require without a principal: %d", rec.Code)
	}
}
