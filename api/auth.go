// Package api serves Gantry's runs API (/api/v1): list, read, cancel runs
// and read their logs, behind an auth.Authenticator and a scope per route.
package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/internal/files"
)

// Tokens authenticates bearer tokens against SHA-256 digests (the
// api.tokensFile). The plain tokens are never stored: only `sha256:<hex>`
// lines. These tokens predate scopes and carry the admin scope; prefer
// `gantry token create` for scoped, expiring, revocable tokens.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	digest [sha256.Size]byte
	name   string
	// id is the digest's first 8 hex digits: names the entry in audit
	// records without revealing anything usable.
	id string
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
		e := tokenEntry{name: "sha256:" + hexDigest[:8], id: "sha256:" + hexDigest[:8]}
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
	b, err := files.ReadBounded(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("api tokens file: %w", err)
	}
	t, err := ParseTokens(string(b))
	if err != nil {
		return nil, fmt.Errorf("api tokens file %s: %w", path, err)
	}
	return t, nil
}

// Len is the number of accepted tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Authenticate implements auth.Authenticator: a matching token is the
// principal named in the file, with the admin scope.
func (t *Tokens) Authenticate(r *http.Request) (auth.Principal, error) {
	token, ok := auth.BearerToken(r)
	if !ok {
		return auth.Principal{}, auth.ErrNoCredential
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
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	e := t.entries[match]
	return auth.Principal{Subject: e.name, Scopes: []auth.Scope{auth.ScopeAdmin}, Method: "tokens-file", CredentialID: e.id}, nil
}
