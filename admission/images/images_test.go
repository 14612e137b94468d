package images

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
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
	img, _ := random.Image(64, 1)
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Config.User = "linux", "1000:1000"
	img, _ = mutate.ConfigFile(img, cf)
	ref, _ := reg.ParseReference(host + "/x/y:v1")
	if err := remote.Write(ref, img, reg.RemoteOptions(context.Background())...); err != nil {
		t.Fatal(err)
	}
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
