package builder

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/buildkit/client"
)

// The seam between BuildKit's progress and the early read-back: in a real
// build by digest with provenance, the statuses BuildKit sends start the
// read while the build is still running, for the digest Solve then
// returns, and the registry already serves the image then (the push is
// done): the early read succeeds and gives the result's fields. Should
// BuildKit rename its statuses, this fails (the build itself would only
// lose the overlap and read back after Solve).
func TestEarlyReadBackStartsAtPushWithTheFinalDigest(t *testing.T) {
	for _, tc := range []struct {
		name, provenance string
		index            bool // the pushed digest is an index (else an image manifest)
	}{
		{"index with provenance", "max", true},
		{"image manifest without provenance", "off", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.Provenance = tc.provenance })
			dir := writeContext(t, map[string]string{"Dockerfile": multiStage, "app.txt": "app " + t.Name()})
			repo := f.repo(t)
			ref, err := f.reg.ParseReference(repo)
			if err != nil {
				t.Fatal(err)
			}
			// A second observer beside the build's own, reading back for real.
			shadow := newEarlyReadBack(context.Background(), ref.Context().Name(), f.b.readBack)
			defer shadow.stop()
			var startedDuringBuild bool
			res, err := f.b.Build(context.Background(), Request{
				ContextDir: dir, Image: repo, Push: true,
				BuildArgs: map[string]string{"BASE": f.env.BaseImage, "GREETING": "early"},
			}, Progress{Events: func(s *client.SolveStatus) {
				shadow.observe(s)
				startedDuringBuild = startedDuringBuild || shadow.started != ""
			}})
			if err != nil {
				t.Fatal(err)
			}
			if !startedDuringBuild || shadow.started != res.Digest {
				t.Fatalf("early read-back started during the build: %v, for %q; the build returned %s", startedDuringBuild, shadow.started, res.Digest)
			}
			got := shadow.take(res.Digest)
			if got == nil {
				t.Fatalf("early read-back of %s failed: %v", res.Digest, shadow.err)
			}
			if got.Ref != res.Ref || got.MediaType != res.MediaType || got.Size != res.Size || got.ProvenanceDigest != res.ProvenanceDigest ||
				!reflect.DeepEqual(got.Images, res.Images) {
				t.Errorf("early read %+v differs from the build's result %+v", got, res)
			}
			if strings.Contains(res.MediaType, "index") != tc.index || len(res.Images) != 1 || res.Size <= 0 ||
				(res.ProvenanceDigest != "") != tc.index {
				t.Errorf("result %+v: want an index %v, one image, a size, provenance %v", res, tc.index, tc.index)
			}
		})
	}
}
