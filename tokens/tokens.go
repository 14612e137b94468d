// Package tokens keeps Gantry's scoped API tokens: `gantry token create`
// makes one, prints it once and stores only its SHA-256; `gantry serve`
// authenticates bearer tokens against the store (auth.Authenticator).
//
// The store is one JSON file (by default tokens.json in the queue's data
// dir), written atomically (temp file + rename) under an exclusive file
// lock, so the CLI can create and revoke tokens while the server runs: the
// server re-reads the file when it changes. A token is
// "gantry_<16 hex id>_<43 chars base64url secret>"; the id is not secret
// and names the token in lists and audit records.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/internal/files"
)

// Prefix starts every token (secret scanners can look for it).
const Prefix = "gantry_"

const (
	idHexLen     = 16
	secretBytes  = 32
	secretLen    = 43 // base64url (no padding) of 32 bytes
	tokenLen     = len(Prefix) + idHexLen + 1 + secretLen
	maxStoreSize = 4 << 20
	fileVersion  = 1
)

// Token is the stored record of a token: never the token itself.
type Token struct {
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	Scopes    []auth.Scope `json:"scopes"`
	CreatedAt time.Time    `json:"createdAt"`
	ExpiresAt *time.Time   `json:"expiresAt,omitempty"`
	RevokedAt *time.Time   `json:"revokedAt,omitempty"`
	// Hash is "sha256:<hex>" of the whole token string.
	Hash string `json:"hash,omitempty"`
}

// State is active, expired or revoked at time now.
func (t Token) State(now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return "expired"
	}
	return "active"
}

type storeFile struct {
	Version int     `json:"version"`
	Tokens  []Token `json:"tokens"`
}

// Store is a token file.
type Store struct {
	path string
	// Now is the clock (tests set it).
	Now func() time.Time

	mu      sync.Mutex
	cached  []Token
	modTime time.Time
	size    int64
	loaded  bool
}

// Open returns the store at path; the file is created by the first
// Create. It is not read until needed.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("tokens: a store path is required (api.tokenStore)")
	}
	return &Store{path: path, Now: time.Now}, nil
}

// Path is the store file.
func (s *Store) Path() string { return s.path }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// CreateOptions describe a new token.
type CreateOptions struct {
	// Name identifies the token's holder (letters, digits, . _ @ -; up to
	// 64); unique among active tokens.
	Name   string
	Scopes []auth.Scope
	// TTL, if positive, makes the token expire that long after creation.
	TTL time.Duration
}

// Create makes a token, stores its hash and returns the token (shown to
// the user once) and its record.
func (s *Store) Create(o CreateOptions) (string, Token, error) {
	if !nameRE.MatchString(o.Name) {
		return "", Token{}, fmt.Errorf("token name %q: want 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", o.Name)
	}
	if len(o.Scopes) == 0 {
		return "", Token{}, errors.New("a token needs a scope: runs:read, runs:write or admin")
	}
	for _, sc := range o.Scopes {
		if _, err := auth.ParseScope(string(sc)); err != nil {
			return "", Token{}, err
		}
	}
	if o.TTL < 0 {
		return "", Token{}, errors.New("a token's lifetime must be positive")
	}
	var idb [idHexLen / 2]byte
	var secret [secretBytes]byte
	_, _ = rand.Read(idb[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	_, _ = rand.Read(secret[:])
	id := hex.EncodeToString(idb[:])
	plain := Prefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(plain))
	now := s.Now().UTC().Truncate(time.Second)
	t := Token{ID: id, Name: o.Name, Scopes: slices.Clone(o.Scopes), CreatedAt: now, Hash: "sha256:" + hex.EncodeToString(sum[:])}
	if o.TTL > 0 {
		exp := now.Add(o.TTL)
		t.ExpiresAt = &exp
	}
	err := s.modify(func(list []Token) ([]Token, error) {
		for _, old := range list {
			if old.Name == o.Name && old.State(now) == "active" {
				return nil, fmt.Errorf("an active token named %q exists (id %s): revoke it first or pick another name", o.Name, old.ID)
			}
		}
		return append(list, t), nil
	})
	if err != nil {
		return "", Token{}, err
	}
	return plain, t, nil
}

// Revoke marks the token with this id (or, if unique, this active name)
// revoked. Revoked tokens stay listed.
func (s *Store) Revoke(idOrName string) (Token, error) {
	var out Token
	now := s.Now().UTC().Truncate(time.Second)
	err := s.modify(func(list []Token) ([]Token, error) {
		match := -1
		for i, t := range list {
			if t.ID == idOrName {
				match = i
				break
			}
			if t.Name == idOrName && t.State(now) == "active" {
				if match >= 0 {
					return nil, fmt.Errorf("several active tokens are named %q: revoke by id", idOrName)
				}
				match = i
			}
		}
		if match < 0 {
			return nil, fmt.Errorf("no token with id or active name %q (gantry token list)", idOrName)
		}
		if list[match].RevokedAt == nil {
			list[match].RevokedAt = &now
		}
		out = list[match]
		return list, nil
	})
	return out, err
}

// List returns every token record, oldest first.
func (s *Store) List() ([]Token, error) {
	list, err := s.current()
	return slices.Clone(list), err
}

// ParseToken splits a token into its id and checks its shape, without
// looking anything up.
func ParseToken(tok string) (id string, ok bool) {
	if len(tok) != tokenLen || !strings.HasPrefix(tok, Prefix) {
		return "", false
	}
	rest := tok[len(Prefix):]
	id, secret, found := strings.Cut(rest, "_")
	if !found || len(id) != idHexLen || len(secret) != secretLen {
		return "", false
	}
	if _, err := hex.DecodeString(id); err != nil || strings.ToLower(id) != id {
		return "", false
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(secret); err != nil {
		return "", false
	}
	return id, true
}

// Authenticate implements auth.Authenticator for "Bearer gantry_..."
// tokens. Other bearer tokens are not this store's (ErrNoCredential);
// unknown, expired and revoked tokens are ErrUnauthenticated.
func (s *Store) Authenticate(r *http.Request) (auth.Principal, error) {
	tok, ok := auth.BearerToken(r)
	if !ok || !strings.HasPrefix(tok, Prefix) {
		return auth.Principal{}, auth.ErrNoCredential
	}
	return s.Check(tok)
}

// Check authenticates a token string (a bearer token or the dashboard's
// login form).
func (s *Store) Check(tok string) (auth.Principal, error) {
	id, ok := ParseToken(tok)
	if !ok {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	list, err := s.current()
	if err != nil {
		// Fail closed; the error names the file, never the token.
		return auth.Principal{}, fmt.Errorf("%w: %v", auth.ErrUnauthenticated, err)
	}
	sum := sha256.Sum256([]byte(tok))
	for _, t := range list {
		if t.ID != id {
			continue
		}
		want, err := hex.DecodeString(strings.TrimPrefix(t.Hash, "sha256:"))
		if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
			return auth.Principal{}, auth.ErrUnauthenticated
		}
		if st := t.State(s.Now()); st != "active" {
			return auth.Principal{}, fmt.Errorf("%w: token %s is %s", auth.ErrUnauthenticated, t.ID, st)
		}
		return auth.Principal{Subject: t.Name, Scopes: slices.Clone(t.Scopes), Method: "token", CredentialID: t.ID}, nil
	}
	return auth.Principal{}, auth.ErrUnauthenticated
}

// current returns the records, re-reading the file when it changed.
func (s *Store) current() ([]Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		s.cached, s.loaded = nil, true
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token store %s: %w", s.path, err)
	}
	if s.loaded && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size {
		return s.cached, nil
	}
	list, err := readFile(s.path)
	if err != nil {
		return nil, err
	}
	s.cached, s.modTime, s.size, s.loaded = list, fi.ModTime(), fi.Size(), true
	return list, nil
}

func readFile(path string) ([]Token, error) {
	b, err := files.ReadBounded(path, maxStoreSize)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("token store: %w", err)
	}
	return parseStore(b, path)
}

func parseStore(b []byte, path string) ([]Token, error) {
	var sf storeFile
	if err := json.Unmarshal(b, &sf); err != nil {
		return nil, fmt.Errorf("token store %s: not valid JSON: %v", path, err)
	}
	if sf.Version != fileVersion {
		return nil, fmt.Errorf("token store %s: version %d, this gantry reads version %d", path, sf.Version, fileVersion)
	}
	for i, t := range sf.Tokens {
		h, ok := strings.CutPrefix(t.Hash, "sha256:")
		if b, err := hex.DecodeString(h); !ok || err != nil || len(b) != sha256.Size || len(t.ID) != idHexLen {
			return nil, fmt.Errorf("token store %s: entry %d (%q) is malformed", path, i, t.ID)
		}
	}
	return sf.Tokens, nil
}

// modify runs fn on the stored list under an exclusive lock and writes
// the result atomically.
func (s *Store) modify(fn func([]Token) ([]Token, error)) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	lock, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("token store: lock %s: %w", lock.Name(), err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	list, err := readFile(s.path)
	if err != nil {
		return err
	}
	list, err = fn(list)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(storeFile{Version: fileVersion, Tokens: list}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".tokens-*")
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("token store: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("token store: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	s.mu.Lock()
	s.loaded = false
	s.mu.Unlock()
	return nil
}

// ParseTTL reads a lifetime: a Go duration (12h, 90m) or a number of
// days (30d). Empty or "never" is no expiry (0).
func ParseTTL(s string) (time.Duration, error) {
	if s == "" || s == "never" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 3650 {
			return 0, fmt.Errorf("expiry %q: want 1d..3650d, a duration such as 12h, or never", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("expiry %q: want a number of days (30d), a duration such as 12h, or never", s)
	}
	return d, nil
}
