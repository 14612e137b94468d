package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gantry-dev/gantry/auth"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "gantry"
)

// issuer is a local OIDC issuer: its keys, and a JWKS endpoint over TLS.
type issuer struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
	pub  []jose.JSONWebKey
	srv  *httptest.Server
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	is := &issuer{keys: map[string]crypto.Signer{}}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is.add("rsa-1", rsaKey, jose.RS256)
	is.add("ec-1", ecKey, jose.ES256)
	is.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: is.pub})
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) add(kid string, k crypto.Signer, alg jose.SignatureAlgorithm) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys[kid] = k
	is.pub = append(is.pub, jose.JSONWebKey{Key: k.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"})
}

func (is *issuer) sign(t *testing.T, kid string, alg jose.SignatureAlgorithm, claims any) string {
	t.Helper()
	is.mu.Lock()
	k := is.keys[kid]
	is.mu.Unlock()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type claims struct {
	jwt.Claims
	Groups any    `json:"groups,omitempty"`
	Email  string `json:"email,omitempty"`
}

func validClaims(now time.Time) claims {
	return claims{
		Claims: jwt.Claims{
			Issuer: testIssuer, Subject: "user-42", Audience: jwt.Audience{testAudience},
			Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		},
		Groups: []string{"platform", "everyone"},
	}
}

func newAuth(t *testing.T, is *issuer, mod func(*Config)) *Authenticator {
	t.Helper()
	cfg := Config{
		Issuer: testIssuer, Audience: testAudience, JWKSURL: is.srv.URL, HTTPClient: is.srv.Client(),
		Groups: []GroupScopes{
			{Group: "platform", Scopes: []auth.Scope{auth.ScopeRunsWrite}},
			{Group: "admins", Scopes: []auth.Scope{auth.ScopeAdmin}},
			{Group: "everyone", Scopes: []auth.Scope{auth.ScopeRunsRead}},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerify(t *testing.T) {
	is := newIssuer(t)
	a := newAuth(t, is, func(c *Config) { c.Algorithms = []string{"RS256", "PS256", "ES256"} })
	now := time.Now()
	mod := func(f func(*claims)) claims {
		c := validClaims(now)
		f(&c)
		return c
	}
	valid := is.sign(t, "rsa-1", jose.RS256, validClaims(now))
	payload := strings.Split(valid, ".")[1]
	// An HS256 token keyed with the RSA public key (algorithm confusion).
	// Each step is checked: an empty token would be refused for being
	// empty, and the confusion case would pass without being tried.
	pubDER, err := json.Marshal(is.pub[0])
	if err != nil {
		t.Fatal(err)
	}
	hs, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, (&jose.SignerOptions{}).WithHeader("kid", "rsa-1"))
	if err != nil {
		t.Fatal(err)
	}
	hsTok, err := jwt.Signed(hs).Claims(validClaims(now)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	forger := &issuer{keys: map[string]crypto.Signer{"rsa-1": otherKey}}

	for _, tc := range []struct {
		name   string
		tok    string
		scopes []auth.Scope
		err    string
	}{
		{"valid RS256", valid, []auth.Scope{auth.ScopeRunsWrite, auth.ScopeRunsRead}, ""},
		{"valid ES256", is.sign(t, "ec-1", jose.ES256, validClaims(now)), []auth.Scope{auth.ScopeRunsWrite, auth.ScopeRunsRead}, ""},
		{"groups as one string", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Groups = "admins" })), []auth.Scope{auth.ScopeAdmin}, ""},
		{"wrong issuer", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Issuer = "https://evil.test" })), nil, "issuer"},
		{"issuer with trailing slash", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Issuer = testIssuer + "/" })), nil, "issuer"},
		{"wrong audience", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Audience = jwt.Audience{"other-app"} })), nil, "audience"},
		{"no audience", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Audience = nil })), nil, "audience"},
		{"expired", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Expiry = jwt.NewNumericDate(now.Add(-2 * time.Minute)) })), nil, "expired"},
		{"no exp", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Expiry = nil })), nil, "no exp"},
		{"not yet valid", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })), nil, "not valid yet"},
		{"no subject", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Subject = "" })), nil, "no sub"},
		{"no mapped group", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Groups = []string{"visitors"} })), nil, "mapped to a scope"},
		{"no groups", is.sign(t, "rsa-1", jose.RS256, mod(func(c *claims) { c.Groups = nil })), nil, "mapped to a scope"},
		{"alg none", b64(`{"alg":"none","kid":"rsa-1","typ":"JWT"}`) + "." + payload + ".", nil, "not accepted"},
		{"alg None", b64(`{"alg":"None","kid":"rsa-1"}`) + "." + payload + ".", nil, "not accepted"},
		{"HS256 with the public key", hsTok, nil, "not accepted"},
		{"PS256 with the RS256 key", is.sign(t, "rsa-1", jose.PS256, validClaims(now)), nil, "is for RS256"},
		{"unknown kid", forgedKid(t, forger, now), nil, "unknown key id"},
		{"forged signature, known kid", forger.sign(t, "rsa-1", jose.RS256, validClaims(now)), nil, "signature"},
		{"tampered payload", strings.Replace(valid, payload, b64(`{"iss":"`+testIssuer+`","sub":"root","aud":"gantry","exp":9999999999,"groups":["admins"]}`), 1), nil, "signature"},
		{"garbage", "eyJhbGciOi.eyJ.sig", nil, "not accepted"},
		{"too large", "eyJ" + strings.Repeat("A", MaxTokenBytes) + ".e.s", nil, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/runs", nil)
			r.Header.Set("Authorization", "Bearer "+tc.tok)
			p, err := a.Authenticate(r)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if p.Subject != "oidc:user-42" || p.Method != "oidc" || !slices.Equal(p.Scopes, tc.scopes) {
					t.Fatalf("principal %+v, want scopes %v", p, tc.scopes)
				}
				return
			}
			if !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want ErrUnauthenticated mentioning %q", err, tc.err)
			}
			if strings.Contains(err.Error(), tc.tok) && len(tc.tok) > 20 {
				t.Fatal("the error echoes the token")
			}
		})
	}
}

// forgedKid signs with a key id the issuer never published.
func forgedKid(t *testing.T, forger *issuer, now time.Time) string {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	forger.keys["made-up"] = k
	return forger.sign(t, "made-up", jose.RS256, validClaims(now))
}

func TestOtherCredentialsAreLeftToTheChain(t *testing.T) {
	a := newAuth(t, newIssuer(t), nil)
	for _, h := range []string{"", "Bearer gantry_abc123", "Basic dXNlcjpwdw==", "Bearer a.b.c"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if _, err := a.Authenticate(r); !errors.Is(err, auth.ErrNoCredential) {
			t.Errorf("%q: %v, want ErrNoCredential", h, err)
		}
	}
}

func TestKeyRotationAndRefreshBound(t *testing.T) {
	is := newIssuer(t)
	var fetches int
	var mu sync.Mutex
	inner := is.srv.Config.Handler
	is.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetches++
		mu.Unlock()
		inner.ServeHTTP(w, r)
	})
	clock := time.Now()
	a := newAuth(t, is, func(c *Config) { c.now = func() time.Time { return clock }; c.RefreshInterval = time.Minute })
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	is.add("ec-2", k2, jose.ES256)
	tok := is.sign(t, "ec-2", jose.ES256, validClaims(clock))
	// Right after the start-up fetch the set is not fetched again.
	if _, err := a.Verify(context.Background(), tok); err == nil || !strings.Contains(err.Error(), "unknown key id") {
		t.Fatalf("new kid within the refresh interval: %v", err)
	}
	clock = clock.Add(2 * time.Minute)
	tok = is.sign(t, "ec-2", jose.ES256, validClaims(clock))
	if _, err := a.Verify(context.Background(), tok); err != nil {
		t.Fatalf("rotated key after the interval: %v", err)
	}
	// A flood of made-up kids costs at most one fetch per interval.
	for range 50 {
		_, _ = a.Verify(context.Background(), forgedKid(t, &issuer{keys: map[string]crypto.Signer{}}, clock))
	}
	mu.Lock()
	defer mu.Unlock()
	if fetches != 2 {
		t.Fatalf("key set fetched %d times, want 2 (start, one refresh)", fetches)
	}
}

func TestJWKSFileAndConfigErrors(t *testing.T) {
	is := newIssuer(t)
	dir := t.TempDir()
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: is.pub})
	file := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(file, set, 0o600); err != nil {
		t.Fatal(err)
	}
	a := newAuth(t, is, func(c *Config) { c.JWKSURL, c.HTTPClient, c.JWKSFile = "", nil, file })
	if _, err := a.Verify(context.Background(), is.sign(t, "ec-1", jose.ES256, validClaims(time.Now()))); err != nil {
		t.Fatalf("key set from a file: %v", err)
	}
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: is.keys["ec-1"], KeyID: "ec-1"}}})
	privFile := filepath.Join(dir, "private.json")
	_ = os.WriteFile(privFile, priv, 0o600)
	groups := []GroupScopes{{Group: "g", Scopes: []auth.Scope{auth.ScopeRunsRead}}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no issuer", Config{Audience: "a", JWKSFile: file, Groups: groups}, "issuer and audience"},
		{"both sources", Config{Issuer: "i", Audience: "a", JWKSFile: file, JWKSURL: "https://x", Groups: groups}, "exactly one"},
		{"plain http", Config{Issuer: "i", Audience: "a", JWKSURL: "http://issuer.example/keys", Groups: groups}, "must be https"},
		{"no groups", Config{Issuer: "i", Audience: "a", JWKSFile: file}, "no group"},
		{"bad scope", Config{Issuer: "i", Audience: "a", JWKSFile: file, Groups: []GroupScopes{{Group: "g", Scopes: []auth.Scope{"root"}}}}, "unknown scope"},
		{"HS256", Config{Issuer: "i", Audience: "a", JWKSFile: file, Groups: groups, Algorithms: []string{"HS256"}}, "not allowed"},
		{"none", Config{Issuer: "i", Audience: "a", JWKSFile: file, Groups: groups, Algorithms: []string{"none"}}, "not allowed"},
		{"missing file", Config{Issuer: "i", Audience: "a", JWKSFile: filepath.Join(dir, "nope"), Groups: groups}, "jwksFile"},
		{"private keys only", Config{Issuer: "i", Audience: "a", JWKSFile: privFile, Groups: groups}, "no public signing key"},
	} {
		if _, err := New(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzVerify: arbitrary bearer text never panics and is never accepted.
func FuzzVerify(f *testing.F) {
	for _, s := range []string{"", "eyJ.eyJ.", "eyJhbGciOiJub25lIn0.e30.", "a.b.c", "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.e30.AAAA"} {
		f.Add(s)
	}
	dir := f.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: "ec-1", Use: "sig"}}})
	file := filepath.Join(dir, "jwks.json")
	_ = os.WriteFile(file, set, 0o600)
	a, err := New(context.Background(), Config{Issuer: testIssuer, Audience: testAudience, JWKSFile: file,
		Groups: []GroupScopes{{Group: "g", Scopes: []auth.Scope{auth.ScopeAdmin}}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if p, err := a.Verify(context.Background(), tok); err == nil {
			t.Fatalf("accepted %q as %+v", tok, p)
		}
	})
}
