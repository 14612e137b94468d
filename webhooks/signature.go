// Package webhooks receives GitHub webhook deliveries: it verifies the
// HMAC-SHA256 signature over the raw body, bounds the body, filters events,
// repositories and refs, and hands each accepted push to the run queue,
// answering GitHub only once the run is durably queued.
package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/gantry-dev/gantry/internal/files"
)

// Errors of signature verification. Their text goes back to the sender, so
// it says what is wrong with the request and nothing about the secrets.
var (
	ErrNoSignature  = errors.New("missing X-Hub-Signature-256 header")
	ErrSHA1Only     = errors.New("only an SHA-1 signature (X-Hub-Signature) was sent; Gantry requires X-Hub-Signature-256")
	ErrBadSignature = errors.New("signature does not match")
)

// Secrets are the webhook secrets a delivery may be signed with. Several
// are accepted at once so a secret can be rotated without downtime: add the
// new one, change it on GitHub, remove the old one.
type Secrets struct{ keys [][]byte }

// NewSecrets returns Secrets for the given values; empty values are refused.
func NewSecrets(values ...[]byte) (Secrets, error) {
	var s Secrets
	for i, v := range values {
		if len(v) == 0 {
			return Secrets{}, fmt.Errorf("webhook secret %d is empty", i+1)
		}
		s.keys = append(s.keys, append([]byte(nil), v...))
	}
	if len(s.keys) == 0 {
		return Secrets{}, errors.New("no GitHub webhook secret configured (--github-webhook-secret-file or webhooks.githubSecretFiles / githubSecretEnv)")
	}
	return s, nil
}

// LoadSecrets reads one secret per file (a trailing newline is dropped)
// and one per named environment variable (looked up with getenv).
func LoadSecrets(files, envNames []string, getenv func(string) string) (Secrets, error) {
	var values [][]byte
	for _, f := range files {
		b, err := readSecretFile(f)
		if err != nil {
			return Secrets{}, err
		}
		values = append(values, b)
	}
	for _, name := range envNames {
		v := getenv(name)
		if v == "" {
			return Secrets{}, fmt.Errorf("webhook secret: environment variable %s is not set or empty", name)
		}
		values = append(values, []byte(v))
	}
	return NewSecrets(values...)
}

func readSecretFile(path string) ([]byte, error) {
	b, err := files.ReadBounded(path, 4096)
	if err != nil {
		return nil, fmt.Errorf("webhook secret file: %w", err)
	}
	// Only the line ending an editor adds is dropped: the secret is the
	// HMAC key byte for byte, spaces included.
	v := []byte(strings.TrimRight(string(b), "\r\n"))
	if len(v) == 0 {
		return nil, fmt.Errorf("webhook secret file %s is empty", path)
	}
	return v, nil
}

// Verify checks a delivery's signature headers against the raw body.
// sig256 is the X-Hub-Signature-256 value ("sha256=<64 hex>"), sha1 the
// legacy X-Hub-Signature value (only used to explain a refusal).
func (s Secrets) Verify(body []byte, sig256, sha1 string) error {
	if sig256 == "" {
		if sha1 != "" {
			return ErrSHA1Only
		}
		return ErrNoSignature
	}
	got, ok := parseSignature(sig256)
	if !ok {
		return ErrBadSignature
	}
	match := 0
	for _, k := range s.keys {
		mac := hmac.New(sha256.New, k)
		mac.Write(body)
		// Constant time, and every secret is tried, so the answer's timing
		// does not say which secret (if any) came close.
		if hmac.Equal(mac.Sum(nil), got) {
			match = 1
		}
	}
	if match == 0 {
		return ErrBadSignature
	}
	return nil
}

// parseSignature decodes "sha256=<hex>". The scheme is matched without
// regard to case and the hex may be upper or lower case; surrounding
// spaces are tolerated (proxies add them). Anything else is refused.
func parseSignature(v string) ([]byte, bool) {
	v = strings.TrimSpace(v)
	scheme, digest, ok := strings.Cut(v, "=")
	if !ok || !strings.EqualFold(scheme, "sha256") || len(digest) != 2*sha256.Size {
		return nil, false
	}
	b, err := hex.DecodeString(digest)
	if err != nil {
		return nil, false
	}
	return b, true
}

// Sign returns the X-Hub-Signature-256 value for body under secret (for
// tests, benchmarks and tools that send deliveries).
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
