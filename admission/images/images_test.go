package images

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
)

func TestUsersCachedAndSingleFlight(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	reg, err := oci.New(config.Registry{Insecure: []string{host}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ref, img := pushWithUser(t, reg, host+"/x/y:v1", "1000:1000")
	ins := New(reg, Options{MaxEntries: 10, TagTTL: time.Minute})
	d, err := ins.Resolve(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := img.Digest(); d.DigestStr() != want.String() {
		t.Fatalf("resolved %s, want %s", d, want)
	}
	before := ins.RegistryCalls()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := ins.Users(context.Background(), d)
			if err != nil || len(u) != 1 || u[0].Root || !u[0].Numeric {
				t.Errorf("users %+v, %v", u, err)
			}
		}()
	}
	wg.Wait()
	if calls := ins.RegistryCalls() - before; calls != 2 {
		t.Fatalf("%d registry calls for 20 concurrent reads of one digest, want 2 (manifest, config)", calls)
	}
	if _, err := ins.Resolve(context.Background(), ref); err != nil || ins.RegistryCalls()-before != 2 {
		t.Fatal("tag answer not reused within its TTL")
	}
	missing, _ := reg.ParseDigest(host + "/x/y@sha256:" + strings.Repeat("0", 64))
	if _, err := ins.Users(context.Background(), missing); err == nil {
		t.Fatal("missing image read")
	}
}

// The first read of a registry in registry.insecure with no credentials
// is the reads alone: its scheme and auth are known, so there is no /v2/
// ping before them (issue 16: two round trips for a cold review).
func TestFirstReadMakesNoPing(t *testing.T) {
	var mu sync.Mutex
	var reqs []string
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r.Method+" "+r.URL.Path)
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	authDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(authDir, "config.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg, err := oci.New(config.Registry{Insecure: []string{host}, AuthDir: authDir, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, img := pushWithUser(t, reg, host+"/x/y:v1", "1000")
	sum, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d, err := reg.ParseDigest(host + "/x/y@" + sum.String())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	reqs = nil
	mu.Unlock()
	if _, err := New(reg, Options{}).Users(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != 2 || slices.Contains(reqs, "GET /v2/") {
		t.Fatalf("first read: %d requests, want 2 (manifest, config) and no ping:\n%s", len(reqs), strings.Join(reqs, "\n"))
	}
}

// pushWithUser pushes a random linux image whose config names user to
// tag, and returns its reference and the image.
func pushWithUser(t *testing.T, reg *oci.Client, tag, user string) (name.Reference, v1.Image) {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Config.User = "linux", user
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := reg.ParseReference(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
	return ref, img
}
