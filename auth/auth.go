// Package auth is the authentication and authorization seam of Gantry's
// HTTP servers: who made a request (a Principal with scopes), how that is
// decided (an Authenticator: API tokens, the legacy tokens file, OIDC, a
// dashboard session), and the middleware that enforces a scope per route.
//
// Every credential source maps to the same three scopes, so routes need
// not know how a caller authenticated.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Scope is a permission a principal holds.
type Scope string

// The scopes. Admin implies every scope; runs:write implies runs:read.
const (
	// ScopeRunsRead reads runs, their logs and findings.
	ScopeRunsRead Scope = "runs:read"
	// ScopeRunsWrite also changes runs (cancel).
	ScopeRunsWrite Scope = "runs:write"
	// ScopeAdmin may do anything, including managing tokens.
	ScopeAdmin Scope = "admin"
)

// AllScopes lists every scope, weakest first.
var AllScopes = []Scope{ScopeRunsRead, ScopeRunsWrite, ScopeAdmin}

// ParseScope checks that s names a scope.
func ParseScope(s string) (Scope, error) {
	for _, v := range AllScopes {
		if Scope(s) == v {
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown scope %q: want one of runs:read, runs:write, admin", s)
}

// implies reports whether holding s grants want.
func (s Scope) implies(want Scope) bool {
	switch s {
	case ScopeAdmin:
		return true
	case ScopeRunsWrite:
		return want == ScopeRunsWrite || want == ScopeRunsRead
	case ScopeRunsRead:
		return want == ScopeRunsRead
	}
	return false
}

// Principal is who made a request and what they may do.
type Principal struct {
	// Subject names the caller: a token's name, an OIDC subject, ...
	// It appears in logs, audit records and cancel reasons.
	Subject string `json:"subject"`
	// Scopes held.
	Scopes []Scope `json:"scopes"`
	// Method says how the caller authenticated: "token" (gantry token),
	// "tokens-file" (api.tokensFile), "oidc", "session" (dashboard).
	Method string `json:"method"`
	// CredentialID identifies the credential (a token id; never the
	// secret), for audit records. May be empty.
	CredentialID string `json:"credentialId,omitempty"`
}

// Allows reports whether p holds want (directly or by implication).
func (p Principal) Allows(want Scope) bool {
	return slices.ContainsFunc(p.Scopes, func(s Scope) bool { return s.implies(want) })
}

// Authenticator decides who a request comes from. Token stores, the
// tokens file, OIDC and dashboard sessions implement it.
type Authenticator interface {
	// Authenticate returns the request's principal, or an error wrapping
	// ErrNoCredential (nothing this authenticator understands was sent)
	// or ErrUnauthenticated (a credential was sent and is not valid:
	// unknown, expired, revoked). Errors never contain the credential.
	Authenticate(r *http.Request) (Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (Principal, error)

// Authenticate implements Authenticator.
func (f AuthenticatorFunc) Authenticate(r *http.Request) (Principal, error) { return f(r) }

var (
	// ErrNoCredential: the request carries no credential of the kind an
	// authenticator handles.
	ErrNoCredential = errors.New("a valid bearer token is required (Authorization: Bearer <token>)")
	// ErrUnauthenticated: a credential was sent but is unknown, expired
	// or revoked.
	ErrUnauthenticated = errors.New("the credential is not valid (unknown, expired or revoked)")
)

// Chain tries each authenticator in order and returns the first success.
// If none succeeds it returns ErrUnauthenticated when any of them saw a
// credential, else ErrNoCredential. A nil entry is skipped.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (Principal, error) {
	var last error = ErrNoCredential
	for _, a := range c {
		if a == nil {
			continue
		}
		p, err := a.Authenticate(r)
		if err == nil {
			if p.Subject == "" || len(p.Scopes) == 0 {
				// Fail closed: an authenticator bug must not let an
				// anonymous or scopeless principal through.
				return Principal{}, fmt.Errorf("%w: the authenticator returned no subject or no scopes", ErrUnauthenticated)
			}
			return p, nil
		}
		if !errors.Is(err, ErrNoCredential) {
			last = err
		}
	}
	return Principal{}, last
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header, and whether there was one.
func BearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal a request was authenticated as.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// ErrorWriter writes a refusal (401 or 403) in the format of the server
// (JSON for the API, HTML for the dashboard).
type ErrorWriter func(w http.ResponseWriter, r *http.Request, code int, msg string)

// PlainErrors writes refusals as text.
func PlainErrors(w http.ResponseWriter, _ *http.Request, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg + "\n"))
}

// Middleware authenticates every request with a and puts the principal in
// its context; a request that fails gets 401 and never reaches next.
func Middleware(a Authenticator, fail ErrorWriter) func(http.Handler) http.Handler {
	if fail == nil {
		fail = PlainErrors
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := a.Authenticate(r)
			if err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
				msg := ErrNoCredential.Error()
				if errors.Is(err, ErrUnauthenticated) {
					msg = ErrUnauthenticated.Error()
				}
				fail(w, r, http.StatusUnauthorized, msg)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// Require lets a request through to next only if its principal holds
// scope: 401 without a principal (fail closed if Middleware is missing),
// 403 with one that lacks the scope.
func Require(scope Scope, fail ErrorWriter, next http.Handler) http.Handler {
	if fail == nil {
		fail = PlainErrors
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
			fail(w, r, http.StatusUnauthorized, ErrNoCredential.Error())
			return
		}
		if !p.Allows(scope) {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="gantry", error="insufficient_scope", scope=%q`, scope))
			fail(w, r, http.StatusForbidden, fmt.Sprintf("this needs the %s scope; %s has %s", scope, p.Subject, joinScopes(p.Scopes)))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func joinScopes(s []Scope) string {
	if len(s) == 0 {
		return "none"
	}
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = string(v)
	}
	return strings.Join(parts, ", ")
}
