package oci

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/config"
)

// go-containerregistry itself falls back to plain HTTP for loopback and RFC
// 1918 hosts; for every other host plain HTTP needs registry.insecure.
func TestPlainHTTPOnlyForListedHosts(t *testing.T) {
	c, err := New(config.Registry{Insecure: []string{"127.0.0.1:5000", "mirror.internal:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	for ref, wantScheme := range map[string]string{
		"127.0.0.1:5000/a/b:1":                               "http",
		"registry.example.com:5000/a/b:1":                    "https",
		"registry.example.com/a/b:1":                         "https",
		"127.0.0.1:5000/a@sha256:" + strings.Repeat("a", 64): "http",
	} {
		r, err := c.ParseReference(ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if got := r.Context().Scheme(); got != wantScheme {
			t.Errorf("%s: scheme %s, want %s", ref, got, wantScheme)
		}
	}
}

func TestParseDigestRefusesTags(t *testing.T) {
	c, _ := New(config.Registry{})
	if _, err := c.ParseDigest("example.com/a:latest"); err == nil {
		t.Fatal("a tag was accepted where a digest is required")
	}
}

func TestAuthDirCredentialsAreUsed(t *testing.T) {
	dir := t.TempDir()
	// auth is base64("user:secret")
	cfg := `{"auths":{"reg.example:443":{"auth":"dXNlcjpzZWNyZXQ="}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(config.Registry{AuthDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := name.NewRegistry("reg.example:443")
	a, err := c.Keychain().Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Authorization()
	if err != nil || got.Username != "user" || got.Password != "secret" {
		t.Fatalf("credentials = %+v, %v", got, err)
	}
	other, _ := name.NewRegistry("other.example")
	if a, _ := c.Keychain().Resolve(other); a != authn.Anonymous {
		t.Fatalf("unlisted registry got credentials: %v", a)
	}
}

func TestBadAuthDirDoesNotLeakContent(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths": "hunter2`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(config.Registry{AuthDir: dir})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error = %v", err)
	}
}

func TestRemoteOptionsReachRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	c, err := New(config.Registry{Insecure: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.ParseReference(host + "/x/y:1")
	if err != nil {
		t.Fatal(err)
	}
	img, _ := random.Image(64, 1)
	ctx := context.Background()
	if err := remote.Write(ref, img, c.RemoteOptions(ctx)...); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	d, err := c.ParseDigest(host + "/x/y@" + want.String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(d, c.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); gd != want {
		t.Fatalf("digest %s, want %s", gd, want)
	}
}
