package oci

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/config"
)

// authDir writes a Docker config.json holding auths and returns its
// directory, so tests do not depend on the machine's ~/.docker.
func authDir(t *testing.T, auths string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{`+auths+`}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDeclared(t *testing.T) {
	cases := []struct {
		name       string
		host       string
		insecure   []string
		auths      string
		wantScheme string
		wantOK     bool
	}{
		{"public host, anonymous: https", "registry.example.com", nil, "", "https", true},
		{"public host with port, anonymous: https", "registry.example.com:5000", nil, "", "https", true},
		{"listed plain-HTTP host, anonymous: http", "mirror.internal:5000", []string{"mirror.internal:5000"}, "", "http", true},
		{"listed loopback host: http", "127.0.0.1:5000", []string{"127.0.0.1:5000"}, "", "http", true},
		// go-containerregistry would try these over plain HTTP too when
		// HTTPS fails: the scheme is not known, so they are asked.
		{"unlisted loopback host: unknown scheme", "127.0.0.1:5000", nil, "", "", false},
		{"unlisted localhost: unknown scheme", "localhost:5000", nil, "", "", false},
		{"unlisted RFC 1918 host: unknown scheme", "10.0.0.5:5000", nil, "", "", false},
		// With credentials the registry is asked how it wants them.
		{"public host with credentials", "registry.example.com", nil, `"registry.example.com":{"auth":"dXNlcjpzZWNyZXQ="}`, "", false},
		{"listed host with credentials", "mirror.internal:5000", []string{"mirror.internal:5000"}, `"mirror.internal:5000":{"auth":"dXNlcjpzZWNyZXQ="}`, "", false},
		{"credentials for another host only", "registry.example.com", nil, `"other.example.com":{"auth":"dXNlcjpzZWNyZXQ="}`, "https", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(config.Registry{Insecure: tc.insecure, AuthDir: authDir(t, tc.auths)})
			if err != nil {
				t.Fatal(err)
			}
			reg, err := name.NewRegistry(tc.host)
			if err != nil {
				t.Fatal(err)
			}
			scheme, ok := c.Declared(reg)
			if scheme != tc.wantScheme || ok != tc.wantOK {
				t.Fatalf("Declared(%s) = %q, %v; want %q, %v", tc.host, scheme, ok, tc.wantScheme, tc.wantOK)
			}
		})
	}
}

// tlsRegistry is an in-process registry served over TLS as
// "example.com" (the name httptest's certificate is for), reached through
// a client that dials it on loopback. Every request is recorded with its
// Authorization header.
type tlsRegistry struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []string
	auth []string
}

func newTLSRegistry(t *testing.T, wrap func(http.Handler) http.Handler) *tlsRegistry {
	t.Helper()
	r := &tlsRegistry{}
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Method+" "+req.URL.Path)
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	r.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	r.srv.StartTLS()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *tlsRegistry) take() (reqs, auth []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs, auth, r.reqs, r.auth = r.reqs, r.auth, nil, nil
	return reqs, auth
}

// client returns a Client whose connections to example.com (any port)
// reach r, trusting r's certificate.
func (r *tlsRegistry) client(t *testing.T, reg config.Registry) *Client {
	t.Helper()
	if reg.AuthDir == "" {
		reg.AuthDir = authDir(t, "")
	}
	c, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(r.srv.Certificate())
	addr := r.srv.Listener.Addr().String()
	tr := c.transport.(*referrersMemo).base.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if host, _, _ := net.SplitHostPort(a); host != "example.com" {
			t.Errorf("dialled %s: only example.com is expected", a)
		}
		return dial(ctx, network, addr)
	}
	c.transport = newReferrersMemo(tr)
	return c
}

// push writes a random image to example.com/<repo> and returns its digest
// reference (through RemoteOptions: pushes keep the ping).
func push(t *testing.T, c *Client, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.ParseReference("example.com/" + repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, c.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
	h, _ := img.Digest()
	d, err := c.ParseDigest("example.com/" + repo + "@" + h.String())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// read reads d's manifest and config through ps.
func read(ps *Pullers, d name.Digest) error {
	p, err := ps.Get(d.Context())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	desc, err := p.Get(ctx, d)
	if err != nil {
		return err
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return err
	}
	l, err := p.Layer(ctx, d.Context().Digest(m.Config.Digest.String()))
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// An HTTPS registry read anonymously: no /v2/ ping, the first read is the
// reads alone, over HTTPS (the server speaks nothing else).
func TestPullersSkipPingForDeclaredRegistry(t *testing.T) {
	r := newTLSRegistry(t, nil)
	c := r.client(t, config.Registry{Timeout: 5 * time.Second})
	d := push(t, c, "fn/a")
	r.take()
	ps := c.NewPullers()
	if err := read(ps, d); err != nil {
		t.Fatal(err)
	}
	reqs, auth := r.take()
	if slices.Contains(reqs, "GET /v2/") || len(reqs) != 2 {
		t.Fatalf("first read: %d requests, want 2 and no ping:\n%s", len(reqs), strings.Join(reqs, "\n"))
	}
	for _, a := range auth {
		if a != "" {
			t.Fatalf("an anonymous read sent Authorization %q", a)
		}
	}
}

// A registry that hands out tokens, even to anonymous readers, answers
// the first read 401: that repository then gets go-containerregistry's
// handshake (ping, anonymous token) and the read goes through; later
// reads of it carry the token without a 401.
func TestPullersDeclaredRegistryWithTokens(t *testing.T) {
	const token = "anon-token"
	var realm string
	r := newTLSRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path == "/token" {
				if req.Header.Get("Authorization") != "" {
					http.Error(w, "anonymous only", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"token":"`+token+`"}`)
				return
			}
			if req.Method == http.MethodGet && req.Header.Get("Authorization") != "Bearer "+token {
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`",service="example.com"`)
				http.Error(w, "token please", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, req)
		})
	})
	realm = "https://example.com/token"
	c := r.client(t, config.Registry{Timeout: 5 * time.Second})
	d := push(t, c, "fn/tok")
	r.take()
	ps := c.NewPullers()
	if err := read(ps, d); err != nil {
		t.Fatal(err)
	}
	first, _ := r.take()
	if err := read(ps, d); err != nil {
		t.Fatal(err)
	}
	second, _ := r.take()
	if !slices.Contains(first, "GET /token") {
		t.Fatalf("no token fetched:\n%s", strings.Join(first, "\n"))
	}
	if len(second) != 2 {
		t.Fatalf("second read: %d requests, want 2 (token reused):\n%s", len(second), strings.Join(second, "\n"))
	}
}

// With credentials configured for the registry, nothing changes: it is
// pinged to learn how it wants them (and the read works).
func TestPullersPingWhenCredentialsConfigured(t *testing.T) {
	r := newTLSRegistry(t, nil)
	c := r.client(t, config.Registry{Timeout: 5 * time.Second, AuthDir: authDir(t, `"example.com":{"auth":"dXNlcjpzZWNyZXQ="}`)})
	d := push(t, c, "fn/cred")
	r.take()
	if err := read(c.NewPullers(), d); err != nil {
		t.Fatal(err)
	}
	if reqs, _ := r.take(); !slices.Contains(reqs, "GET /v2/") {
		t.Fatalf("no ping for a registry with credentials:\n%s", strings.Join(reqs, "\n"))
	}
}

// A host listed in registry.insecure is spoken to over plain HTTP, as
// declared: one that serves HTTPS fails the read (fail closed) rather than
// being read some other way.
func TestPullersListedHostServingTLSFails(t *testing.T) {
	r := newTLSRegistry(t, nil)
	port := r.srv.Listener.Addr().(*net.TCPAddr).Port
	host := "example.com:" + strconv.Itoa(port)
	c := r.client(t, config.Registry{Timeout: 5 * time.Second, Insecure: []string{host}})
	h := "sha256:" + strings.Repeat("a", 64)
	d, err := c.ParseDigest(host + "/fn/x@" + h)
	if err != nil {
		t.Fatal(err)
	}
	if err := read(c.NewPullers(), d); err == nil {
		t.Fatal("a plain-HTTP read of an HTTPS registry succeeded")
	}
	if reqs, _ := r.take(); len(reqs) != 0 {
		t.Fatalf("the TLS registry served requests: %v", reqs)
	}
}

func TestRepoOfPath(t *testing.T) {
	for p, want := range map[string]string{
		"/v2/fn/a/manifests/sha256:abc":      "fn/a",
		"/v2/a/blobs/sha256:abc":             "a",
		"/v2/x/manifests/y/manifests/latest": "x/manifests/y",
		"/v2/a/referrers/sha256:abc":         "a",
		"/v2/":                               "",
		"/token":                             "",
		"/v2/manifests/x":                    "",
	} {
		if got := repoOfPath(p); got != want {
			t.Errorf("repoOfPath(%q) = %q, want %q", p, got, want)
		}
	}
}

// FuzzRepoOfPath: whatever the path, the repository is "" or a proper
// prefix of the path after /v2/, followed by one of the API's segments.
func FuzzRepoOfPath(f *testing.F) {
	for _, s := range []string{"/v2/a/manifests/x", "/v2/a/b/blobs/sha256:0", "/v2/", "/v2//manifests/", "/token", "/v2/a/referrers/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r := repoOfPath(p)
		if r == "" {
			return
		}
		rest := strings.TrimPrefix(p, "/v2/")
		if !strings.HasPrefix(p, "/v2/") || !strings.HasPrefix(rest, r) || len(r) >= len(rest) {
			t.Fatalf("repoOfPath(%q) = %q", p, r)
		}
		tail := rest[len(r):]
		if !slices.ContainsFunc([]string{"/manifests/", "/blobs/", "/referrers/", "/tags/"}, func(s string) bool { return strings.HasPrefix(tail, s) }) {
			t.Fatalf("repoOfPath(%q) = %q, followed by %q", p, r, tail)
		}
	})
}
