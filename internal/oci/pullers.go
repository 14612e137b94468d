package oci

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Bounds on what a Pullers keeps: past them it starts over.
const (
	maxPullerRegistries = 64
	maxPullerRepos      = 1024 // per registry
)

// Pullers hands out go-containerregistry Pullers for reading images and
// their signatures, one per registry, so that repeated reads reuse the
// connection and token state (otherwise every request pays a handshake).
//
// A registry whose scheme and auth are known from the configuration is
// read without go-containerregistry's /v2/ ping (see Client.Declared):
// its first read costs the reads themselves, not a ping before them.
// Every other registry is read as go-containerregistry does by default.
// Safe for concurrent use.
type Pullers struct {
	c    *Client
	mu   sync.Mutex
	regs map[string]*pullerEntry
}

type pullerEntry struct {
	p     *remote.Puller
	repos map[string]struct{}
}

// NewPullers returns an empty set of pullers reading through c.
func (c *Client) NewPullers() *Pullers { return &Pullers{c: c, regs: map[string]*pullerEntry{}} }

// Get returns the puller to read repo with. Calls pass their own context.
func (ps *Pullers) Get(repo name.Repository) (*remote.Puller, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	host := repo.RegistryStr()
	e := ps.regs[host]
	if e != nil {
		if _, seen := e.repos[repo.String()]; !seen && len(e.repos) >= maxPullerRepos {
			e = nil
		}
	}
	if e == nil {
		if _, known := ps.regs[host]; !known && len(ps.regs) >= maxPullerRegistries {
			ps.regs = map[string]*pullerEntry{}
		}
		p, err := remote.NewPuller(ps.c.ReadOptions(context.Background(), repo.Registry)...)
		if err != nil {
			return nil, err
		}
		e = &pullerEntry{p: p, repos: map[string]struct{}{}}
		ps.regs[host] = e
	}
	e.repos[repo.String()] = struct{}{}
	return e.p, nil
}

// Declared says whether reg's scheme and auth are known without asking it,
// and the scheme:
//
//   - auth: the keychain has no credentials for reg (anonymous). With
//     credentials the registry is asked (the ping) how it wants them, as
//     before: they are never sent on a guess.
//   - scheme: "http" when reg is in registry.insecure (declared plain
//     HTTP); "https" when go-containerregistry would only ever use HTTPS for
//     it (not a loopback, localhost or RFC 1918 host, which it would also
//     try over plain HTTP). Plain HTTP is never used for an unlisted host.
func (c *Client) Declared(reg name.Registry) (scheme string, ok bool) {
	host := reg.RegistryStr()
	a, err := c.keychain.Resolve(reg)
	if err != nil || a != authn.Anonymous {
		return "", false
	}
	if c.IsInsecure(host) {
		return "http", true
	}
	plain, err := name.NewRegistry(host)
	if err != nil || plain.Scheme() != "https" {
		return "", false
	}
	return "https", true
}

// ReadOptions are the go-containerregistry options for reading from reg
// (not for pushing): for a registry whose scheme and auth are declared, a
// transport that needs no ping; otherwise RemoteOptions.
func (c *Client) ReadOptions(ctx context.Context, reg name.Registry) []remote.Option {
	scheme, ok := c.Declared(reg)
	if !ok {
		return c.RemoteOptions(ctx)
	}
	insecure := scheme == "http"
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	// Rebuilt from the host and the declared scheme alone.
	reg, err := name.NewRegistry(reg.RegistryStr(), opts...)
	if err != nil {
		return c.RemoteOptions(ctx)
	}
	// What go-containerregistry wraps its default transport in, since a
	// Wrapper (below) is taken as is.
	base := transport.NewUserAgent(transport.NewRetry(c.transport, transport.WithRetryStatusCodes(
		http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout)), "")
	dt := &declaredTransport{reg: reg, scheme: scheme, base: base, shaken: map[string]http.RoundTripper{}}
	// go-containerregistry pings a registry before its first request unless
	// it is handed a *transport.Wrapper; FromToken with a non-bearer
	// challenge makes one without a request (anonymous: it adds no header).
	w, err := transport.FromToken(reg, authn.Anonymous, dt, &transport.Challenge{Insecure: insecure}, &transport.Token{})
	if err != nil {
		return c.RemoteOptions(ctx)
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(w)}
}

// declaredTransport reaches one registry with its declared scheme and no
// credentials. When the registry answers 401 with a challenge (it hands
// out tokens, even to anonymous readers), that repository gets
// go-containerregistry's own handshake, anonymous, as it would have without
// the declaration, and the request is sent again through it.
type declaredTransport struct {
	reg    name.Registry
	scheme string
	base   http.RoundTripper

	mu     sync.Mutex
	shaken map[string]http.RoundTripper // repository → handshaken transport
}

func (t *declaredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.reg.RegistryStr() {
		// Somewhere the registry redirected to (blob storage): as is.
		return t.base.RoundTrip(req)
	}
	if req.URL.Scheme != t.scheme {
		req = req.Clone(req.Context())
		req.URL.Scheme = t.scheme
	}
	repo := repoOfPath(req.URL.Path)
	t.mu.Lock()
	rt := t.shaken[repo]
	t.mu.Unlock()
	if rt != nil {
		return rt.RoundTrip(req)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" ||
		(req.Method != http.MethodGet && req.Method != http.MethodHead) {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	var scopes []string
	if repo != "" {
		scopes = []string{t.reg.Repo(repo).Scope(transport.PullScope)}
	}
	rt, err = transport.NewWithContext(req.Context(), t.reg, authn.Anonymous, t.base, scopes)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if len(t.shaken) >= maxPullerRepos {
		clear(t.shaken)
	}
	t.shaken[repo] = rt
	t.mu.Unlock()
	return rt.RoundTrip(req)
}

// repoOfPath is the repository of a distribution API path
// (/v2/<repo>/manifests/<ref>, /v2/<repo>/blobs/<digest>, …), "" when the
// path is not one.
func repoOfPath(p string) string {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return ""
	}
	end := -1
	for _, s := range []string{"/manifests/", "/blobs/", "/referrers/", "/tags/"} {
		end = max(end, strings.LastIndex(rest, s))
	}
	if end <= 0 {
		return ""
	}
	return rest[:end]
}
