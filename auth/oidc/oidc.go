// Package oidc authenticates API and dashboard requests that carry an
// OpenID Connect ID token (a JWT) from one configured issuer, verifying it
// against the issuer's JSON Web Key Set (from a URL or a file) and mapping
// a claim (e.g. groups) to Gantry's scopes.
//
// Refused, as 401 (auth.ErrUnauthenticated): a token from another issuer
// or for another audience, an expired or not yet valid token, a token
// without exp, `alg: none` or an algorithm not allowed, an unknown key
// id, a bad signature, and a valid token that maps to no scope.
package oidc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gantry-dev/gantry/auth"
)

// MaxJWKSBytes bounds a key set (a few keys are a few KiB).
const MaxJWKSBytes = 1 << 20

// MaxTokenBytes bounds a bearer JWT before it is parsed.
const MaxTokenBytes = 16 << 10

// GroupScopes grants Scopes to callers whose groups claim holds Group.
type GroupScopes struct {
	Group  string
	Scopes []auth.Scope
}

// Config is one trusted issuer.
type Config struct {
	// Issuer must equal the token's iss claim exactly.
	Issuer string
	// Audience must be one of the token's aud values (the client id).
	Audience string
	// JWKSURL (https, or http to a loopback address) or JWKSFile holds the
	// issuer's public keys; exactly one is set.
	JWKSURL, JWKSFile string
	// CAFile verifies JWKSURL's certificate (empty: system roots).
	CAFile string
	// Algorithms allowed (default RS256, ES256). "none" is never allowed.
	Algorithms []string
	// SubjectClaim names the caller in logs and audit (default sub).
	SubjectClaim string
	// GroupsClaim holds the caller's groups (default groups): a string or
	// a list of strings.
	GroupsClaim string
	// Groups maps groups to scopes; a token whose groups map to no scope
	// is refused.
	Groups []GroupScopes
	// Leeway tolerates clock skew on exp, nbf and iat (default 1m).
	Leeway time.Duration
	// RefreshInterval: an unknown kid refetches the key set at most this
	// often (default 1m), so a key rotation at the issuer is picked up and
	// a flood of made-up kids cannot hammer it.
	RefreshInterval time.Duration
	// HTTPClient fetches JWKSURL (default: 10 s timeout, CAFile roots).
	HTTPClient *http.Client
	Logger     *slog.Logger
	// now is the clock (tests).
	now func() time.Time
}

// Authenticator verifies ID tokens of one issuer.
type Authenticator struct {
	cfg  Config
	algs []jose.SignatureAlgorithm
	log  *slog.Logger

	mu        sync.Mutex
	keys      jose.JSONWebKeySet
	lastFetch time.Time
}

// New checks cfg and loads the key set once: a key set that cannot be
// loaded at start is an error (fail closed and loud).
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("oidc: issuer and audience are required")
	}
	if (cfg.JWKSURL == "") == (cfg.JWKSFile == "") {
		return nil, errors.New("oidc: set exactly one of jwksURL and jwksFile")
	}
	if cfg.JWKSURL != "" {
		if err := checkURL(cfg.JWKSURL); err != nil {
			return nil, err
		}
	}
	if len(cfg.Groups) == 0 {
		return nil, errors.New("oidc: no group is mapped to a scope (api.oidc.groups): every token would be refused")
	}
	for _, g := range cfg.Groups {
		if g.Group == "" || len(g.Scopes) == 0 {
			return nil, fmt.Errorf("oidc: group mapping %q needs a group and at least one scope", g.Group)
		}
		for _, s := range g.Scopes {
			if _, err := auth.ParseScope(string(s)); err != nil {
				return nil, fmt.Errorf("oidc: group %s: %w", g.Group, err)
			}
		}
	}
	a := &Authenticator{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.cfg.SubjectClaim == "" {
		a.cfg.SubjectClaim = "sub"
	}
	if a.cfg.GroupsClaim == "" {
		a.cfg.GroupsClaim = "groups"
	}
	if a.cfg.Leeway <= 0 {
		a.cfg.Leeway = time.Minute
	}
	if a.cfg.RefreshInterval <= 0 {
		a.cfg.RefreshInterval = time.Minute
	}
	if a.cfg.now == nil {
		a.cfg.now = time.Now
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{string(jose.RS256), string(jose.ES256)}
	}
	for _, s := range algs {
		alg := jose.SignatureAlgorithm(s)
		if !slices.Contains(supported, alg) {
			return nil, fmt.Errorf("oidc: algorithm %q is not allowed (use one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", s)
		}
		a.algs = append(a.algs, alg)
	}
	if a.cfg.HTTPClient == nil && cfg.JWKSURL != "" {
		c, err := httpClient(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		a.cfg.HTTPClient = c
	}
	if err := a.refresh(ctx, true); err != nil {
		return nil, err
	}
	return a, nil
}

// supported are the asymmetric algorithms: a shared-secret HS256 key in
// a public key set would let anyone who reads the set sign tokens.
var supported = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("oidc: jwksURL %q is not a URL", raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme == "http" {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("oidc: jwksURL %q must be https (keys fetched in clear could be replaced)", raw)
}

func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("oidc: caFile %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}, nil
}

// refresh reloads the key set, at most once per RefreshInterval unless
// force. A failed reload keeps the keys there are.
func (a *Authenticator) refresh(ctx context.Context, force bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.now()
	if !force && now.Sub(a.lastFetch) < a.cfg.RefreshInterval {
		return nil
	}
	a.lastFetch = now
	b, err := a.fetch(ctx)
	if err != nil {
		return err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("oidc: key set from %s: %w", a.source(), err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		// Only public, signing keys with an id: a private or symmetric key
		// in the set is a configuration accident, never trusted.
		if k.KeyID == "" || !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return fmt.Errorf("oidc: key set from %s holds no public signing key with a kid", a.source())
	}
	a.keys = jose.JSONWebKeySet{Keys: keys}
	return nil
}

func (a *Authenticator) source() string {
	if a.cfg.JWKSFile != "" {
		return a.cfg.JWKSFile
	}
	return a.cfg.JWKSURL
}

func (a *Authenticator) fetch(ctx context.Context) ([]byte, error) {
	var r io.ReadCloser
	if a.cfg.JWKSFile != "" {
		f, err := os.Open(a.cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: jwksFile: %w", err)
		}
		r = f
	} else {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.JWKSURL, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := a.cfg.HTTPClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("oidc: fetch key set: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("oidc: fetch key set %s: %s", a.cfg.JWKSURL, resp.Status)
		}
		r = resp.Body
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("oidc: read key set: %w", err)
	}
	if len(b) > MaxJWKSBytes {
		return nil, fmt.Errorf("oidc: key set from %s is larger than %d bytes", a.source(), MaxJWKSBytes)
	}
	return b, nil
}

func (a *Authenticator) key(kid string) (jose.JSONWebKey, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range a.keys.Keys {
		if k.KeyID == kid {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

// LooksLikeJWT reports whether a bearer token has the shape of a compact
// JWS (three base64url parts), so that other token kinds are left to the
// other authenticators of the chain.
func LooksLikeJWT(tok string) bool {
	if strings.Count(tok, ".") != 2 || !strings.HasPrefix(tok, "eyJ") {
		return false
	}
	for _, c := range tok {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Authenticate implements auth.Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (auth.Principal, error) {
	tok, ok := auth.BearerToken(r)
	if !ok || !LooksLikeJWT(tok) {
		return auth.Principal{}, auth.ErrNoCredential
	}
	p, err := a.Verify(r.Context(), tok)
	if err != nil {
		// The reason goes to the server log (never the token); the caller
		// only learns that the credential is not valid.
		a.log.Info("oidc token refused", "reason", err.Error())
		return auth.Principal{}, fmt.Errorf("%w: %v", auth.ErrUnauthenticated, err)
	}
	return p, nil
}

// Verify checks one token and returns its principal.
func (a *Authenticator) Verify(ctx context.Context, tok string) (auth.Principal, error) {
	if len(tok) > MaxTokenBytes {
		return auth.Principal{}, errors.New("token too large")
	}
	parsed, err := jwt.ParseSigned(tok, a.algs)
	if err != nil {
		return auth.Principal{}, fmt.Errorf("token not accepted: %w", err)
	}
	if len(parsed.Headers) != 1 {
		return auth.Principal{}, errors.New("token must have exactly one signature")
	}
	kid := parsed.Headers[0].KeyID
	if kid == "" {
		return auth.Principal{}, errors.New("token has no key id (kid)")
	}
	key, ok := a.key(kid)
	if !ok {
		// The issuer may have rotated its keys: look once more (bounded by
		// RefreshInterval).
		if err := a.refresh(ctx, false); err != nil {
			a.log.Warn("oidc key set refresh failed; keeping the keys already loaded", "err", err)
		}
		if key, ok = a.key(kid); !ok {
			return auth.Principal{}, fmt.Errorf("unknown key id %q", trim(kid))
		}
	}
	// A key published for one algorithm is not used with another.
	if key.Algorithm != "" && key.Algorithm != parsed.Headers[0].Algorithm {
		return auth.Principal{}, fmt.Errorf("key %q is for %s, the token says %s", trim(kid), trim(key.Algorithm), trim(parsed.Headers[0].Algorithm))
	}
	var std jwt.Claims
	extra := map[string]any{}
	if err := parsed.Claims(key.Key, &std, &extra); err != nil {
		return auth.Principal{}, fmt.Errorf("signature or claims not valid: %w", err)
	}
	if std.Expiry == nil {
		return auth.Principal{}, errors.New("token has no exp claim")
	}
	if err := std.ValidateWithLeeway(jwt.Expected{
		Issuer: a.cfg.Issuer, AnyAudience: jwt.Audience{a.cfg.Audience}, Time: a.cfg.now(),
	}, a.cfg.Leeway); err != nil {
		return auth.Principal{}, err
	}
	subject, _ := extra[a.cfg.SubjectClaim].(string)
	if subject == "" {
		return auth.Principal{}, fmt.Errorf("token has no %s claim", a.cfg.SubjectClaim)
	}
	scopes := a.scopes(extra[a.cfg.GroupsClaim])
	if len(scopes) == 0 {
		return auth.Principal{}, fmt.Errorf("%s: none of the token's groups is mapped to a scope", trim(subject))
	}
	return auth.Principal{Subject: "oidc:" + trim(subject), Scopes: scopes, Method: "oidc"}, nil
}

func (a *Authenticator) scopes(claim any) []auth.Scope {
	var groups []string
	switch v := claim.(type) {
	case string:
		groups = []string{v}
	case []any:
		for _, g := range v {
			if s, ok := g.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	var out []auth.Scope
	for _, m := range a.cfg.Groups {
		if slices.Contains(groups, m.Group) {
			for _, s := range m.Scopes {
				if !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// trim bounds claim text before it reaches logs and audit records.
func trim(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.ToValidUTF8(s, "?")
}
