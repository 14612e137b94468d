package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/tlsreload"
	"github.com/gantry-dev/gantry/webhooks"
)

func TestServeRefusesToStartWithoutTLS(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	cfg := filepath.Join(dir, "c.yaml")
	_ = os.WriteFile(secret, []byte("s3cret"), 0o600)
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("queue:\n  dataDir: %s\nwebhooks:\n  githubSecretFiles: [%q]\n", filepath.Join(dir, "d"), secret)), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--config", cfg}, "no serving certificate"},
		{[]string{"serve", "--config", cfg, "--tls-cert", filepath.Join(dir, "missing.crt")}, "server.tls.certFile and server.tls.keyFile"},
		{[]string{"serve", "--config", cfg, "--tls-cert", filepath.Join(dir, "missing.crt"), "--tls-key", filepath.Join(dir, "missing.key")}, "missing.crt"},
		{[]string{"serve", "--config", cfg, "--tls-cert", "a", "--tls-key", "b", "--insecure-http"}, "exclude each other"},
	} {
		code, _, stderr := gantryWithTimeout(t, tc.args...)
		if code != exitFailure || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want exit 2 mentioning %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestServeSecureByDefault runs `gantry serve` as a process with a TLS
// certificate, an OIDC issuer (key set from a file) and tight limits, and
// checks what a client sees.
func TestServeSecureByDefault(t *testing.T) {
	testenv.Require(t)
	dir := t.TempDir()
	write := fileWriter(t, dir)
	caPEM, certPEM, keyPEM, err := tlsreload.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := write("tls.crt", certPEM), write("tls.key", keyPEM)
	signKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: signKey.Public(), KeyID: "k1", Use: "sig", Algorithm: "ES256"}}})
	secret := write("secret", []byte("serve-secret"))
	cfg := write("gantry.yaml", []byte(fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  metricsListen: 127.0.0.1:0
  tls: {certFile: %q, keyFile: %q}
  rateLimits:
    apiPerToken: {rate: 0.01, burst: 3}
    failedAuthPerSource: {rate: 0.01, burst: 5}
webhooks:
  githubSecretFiles: [%q]
  repos: [{name: acme/app}]
queue:
  dataDir: %q
api:
  oidc:
    issuer: https://issuer.test
    audience: gantry
    jwksFile: %q
    groups: [{group: dev, scopes: [runs:read]}]
`, certFile, keyFile, secret, filepath.Join(dir, "data"), write("jwks.json", jwks))))
	p := startGantry(t, filepath.Join(dir, "serve.log"), "serve", "--config", cfg, "--test-stages", "record:"+filepath.Join(dir, "calls")+":1:1ms")
	if !strings.Contains(readFile(t, filepath.Join(dir, "serve.log")), "tls=true") {
		t.Fatal("serve did not log that it serves TLS")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	base := "https://" + p.addr

	if resp, err := http.Get("http://" + p.addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP was served")
		}
	}
	if resp, err := client.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS /healthz: %v %v", resp, err)
	}

	token := func(exp time.Duration, groups ...string) string {
		// A token that failed to sign would be refused and pass the
		// refusal cases below.
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: signKey}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(map[string]any{
			"iss": "https://issuer.test", "aud": "gantry", "sub": "dev-1", "groups": groups,
			"exp": time.Now().Add(exp).Unix(), "iat": time.Now().Unix(),
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	get := func(bearer string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, base+"/api/v1/runs", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	good := token(time.Hour, "dev")
	for i, want := range []int{200, 200, 200, 429} {
		resp := get(good)
		if resp.StatusCode != want {
			t.Fatalf("OIDC request %d: %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("429 without Retry-After: %q", resp.Header.Get("Retry-After"))
			}
		}
	}
	if resp := get(token(-time.Hour, "dev")); resp.StatusCode != 401 {
		t.Fatalf("expired OIDC token: %d", resp.StatusCode)
	}
	if resp := get(token(time.Hour, "visitors")); resp.StatusCode != 401 {
		t.Fatalf("OIDC token without a mapped group: %d", resp.StatusCode)
	}
	// Two failures spent above; three forged deliveries spend the rest of
	// the budget of 5, then the source is refused before any HMAC, even
	// with a valid signature.
	deliver := func(sig string) int {
		body := []byte(`{"zen":"hi"}`)
		if sig == "" {
			sig = webhooks.Sign([]byte("serve-secret"), body)
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/github", bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "ping")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("d-%d", time.Now().UnixNano()))
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	forged := "sha256=" + strings.Repeat("00", 32)
	if got := []int{deliver(""), deliver(forged), deliver(forged), deliver(forged), deliver(""), deliver(forged)}; fmt.Sprint(got) != "[200 401 401 401 429 429]" {
		t.Fatalf("valid, 3 forged, valid, forged: %v, want [200 401 401 401 429 429]", got)
	}
	// Metrics come from their own listener, over the same TLS.
	metrics, err := client.Get("https://" + p.metricsAddr(t) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer metrics.Body.Close()
	var mb bytes.Buffer
	_, _ = mb.ReadFrom(metrics.Body)
	for _, want := range []string{`gantry_auth_failures_total{endpoint="api"} 2`, `gantry_auth_failures_total{endpoint="webhook"} 3`,
		`gantry_rate_limited_total{limit="api_token"} 1`, `gantry_rate_limited_total{limit="failed_auth"} 2`} {
		if !strings.Contains(mb.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
