// Package api serves Gantry's runs API (/api/v1): list, read, cancel runs
// and read their logs, behind bearer-token authentication.
package api

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// Principal is who made a request.
type Principal struct {
	// Name is the token's name from the tokens file, or a digest prefix.
	Name string
}

// Authenticator decides who a request comes from. It is the seam for
// scoped tokens and OIDC: the API only needs a Principal or an error.
type Authenticator interface {
	Authenticate(r *http.Request) (Principal, error)
}

// ErrUnauthenticated is returned for a missing or unknown credential.
var ErrUnauthenticated = errors.New("a valid bearer token is required (Authorization: Bearer <token>)")

// Tokens authenticates bearer tokens against SHA-256 digests. The plain
// tokens are never stored: only `sha256:<hex>` lines.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest [sha256.Size]byte
	name   string
}

// ParseTokens reads a tokens file's content: one `sha256:<64 hex>` per
// line, optionally followed by whitespace and a name (for logs); blank
// lines and lines starting with # are skipped.
func ParseTokens(content string) (*Tokens, error) {
	t := &Tokens{}
	sc := bufio.NewScanner(strings.NewReader(content))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		hexDigest, ok := strings.CutPrefix(fields[0], "sha256:")
		b, err := hex.DecodeString(hexDigest)
		if !ok || err != nil || len(b) != sha256.Size {
			// Do not echo the line: it may be a plain token pasted by mistake.
			return nil, fmt.Errorf("line %d: want sha256:<64 hex digits> [name] (make one with: printf %%s \"$TOKEN\" | sha256sum)", n)
		}
		e := tokenEntry{name: "sha256:" + hexDigest[:8]}
		copy(e.digest[:], b)
		if len(fields) > 1 {
			e.name = strings.Join(fields[1:], " ")
		}
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// LoadTokens reads a tokens file (bounded to 1 MiB). An empty path gives
// a Tokens that accepts nothing.
func LoadTokens(path string) (*Tokens, error) {
	if path == "" {
		return &Tokens{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("api tokens file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("api tokens file %s: %w", path, err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("api tokens file %s: larger than 1 MiB", path)
	}
	t, err := ParseTokens(string(b))
	if err != nil {
		return nil, fmt.Errorf("api tokens file %s: %w", path, err)
	}
	return t, nil
}

// Len is the number of accepted tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Authenticate implements Authenticator.
func (t *Tokens) Authenticate(r *http.Request) (Principal, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrUnauthenticated
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return Principal{}, ErrUnauthenticated
	}
	d := sha256.Sum256([]byte(token))
	match := -1
	// Compare against every entry in constant time, so timing says nothing
	// about which digest (if any) was close.
	for i := range t.entries {
		if subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{Name: t.entries[match].name}, nil
}

type principalKey struct{}

// PrincipalFrom returns the authenticated principal of a request context.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// RequireAuth lets only authenticated requests through to next.
func RequireAuth(a Authenticator, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}
