// Package oci holds the one way Gantry parses image references and reaches
// registries, so that plain-HTTP hosts, credentials and timeouts are decided
// in one place for push, scan, sign, verify and admission.
package oci

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/config"
)

// Client carries registry settings.
type Client struct {
	insecure  []string
	keychain  authn.Keychain
	transport http.RoundTripper
	timeout   time.Duration
}

// New builds a Client from the registry configuration section.
func New(c config.Registry) (*Client, error) {
	var kc authn.Keychain = authn.DefaultKeychain
	if c.AuthDir != "" {
		path := filepath.Join(c.AuthDir, "config.json")
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("registry.authDir: %w", err)
		}
		defer f.Close()
		cf := configfile.New(path)
		if err := cf.LoadFromReader(f); err != nil {
			// The file's content may hold secrets: name the file, not the bytes.
			return nil, fmt.Errorf("registry.authDir: %s is not a valid Docker config.json", path)
		}
		kc = &fileKeychain{cf: cf}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = timeout
	return &Client{insecure: slices.Clone(c.Insecure), keychain: kc, transport: newReferrersMemo(tr), timeout: timeout}, nil
}

// Timeout is the bound on one registry request.
func (c *Client) Timeout() time.Duration { return c.timeout }

// NameOptions returns the options to parse a reference with: plain HTTP is
// allowed only for hosts in registry.insecure.
func (c *Client) NameOptions(ref string) []name.Option {
	// Parse once without options to learn the registry host.
	r, err := name.ParseReference(ref)
	if err == nil && c.IsInsecure(r.Context().RegistryStr()) {
		return []name.Option{name.Insecure}
	}
	return nil
}

// IsInsecure says whether host (host[:port]) may be reached over plain HTTP.
func (c *Client) IsInsecure(host string) bool { return slices.Contains(c.insecure, host) }

// ParseReference parses a tag or digest reference.
func (c *Client) ParseReference(ref string) (name.Reference, error) {
	return name.ParseReference(ref, c.NameOptions(ref)...)
}

// ParseDigest parses a reference that must be pinned by digest.
func (c *Client) ParseDigest(ref string) (name.Digest, error) {
	return name.NewDigest(ref, c.NameOptions(ref)...)
}

// RemoteOptions are the go-containerregistry options for one call.
func (c *Client) RemoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.transport),
	}
}

// Keychain is the credential source, for libraries that take one.
func (c *Client) Keychain() authn.Keychain { return c.keychain }

// fileKeychain resolves credentials from one Docker config file.
type fileKeychain struct{ cf *configfile.ConfigFile }

func (k *fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	key := target.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	ac, err := k.cf.GetAuthConfig(key)
	if err != nil {
		return nil, err
	}
	if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" && ac.Auth == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
	}), nil
}
