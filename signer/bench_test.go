package signer

import (
	"context"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/config"
	goci "github.com/gantry-dev/gantry/internal/oci"
)

// BenchmarkVerify measures in-process verification of a signed image
// against the loopback registry, as admission runs it: warm reuses the
// verifier and its connections; cold builds a new registry client (new
// connections) for every verification.
func BenchmarkVerify(b *testing.B) {
	r := newRig(b)
	dir := b.TempDir()
	k := newTestKey(b, dir, "a")
	newTestKey(b, dir, "b")
	newTestKey(b, dir, "c")
	d := r.pushImage(r.uniqueRepo(), "v1")
	if _, err := r.signer(k).Sign(context.Background(), d); err != nil {
		b.Fatal(err)
	}
	pol := writePolicy(b, dir, "identities:\n  - {name: a, key: a.pub}\n  - {name: b, key: b.pub}\n  - {name: c, key: c.pub}\n")
	ctx := context.Background()
	b.Run("warm", func(b *testing.B) {
		v, _ := NewVerifier(pol, r.reg)
		for b.Loop() {
			res, err := v.Verify(ctx, d)
			if err != nil || !res.Verified {
				b.Fatalf("%+v %v", res, err)
			}
		}
	})
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			reg, _ := goci.New(config.Registry{Insecure: []string{r.env.Registry}, Timeout: 10 * time.Second})
			v, _ := NewVerifier(pol, reg)
			res, err := v.Verify(ctx, d)
			if err != nil || !res.Verified {
				b.Fatalf("%+v %v", res, err)
			}
		}
	})
}
