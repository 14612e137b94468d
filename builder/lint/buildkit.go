package lint

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// buildkitChecks runs BuildKit's own Dockerfile linter in process: the same
// rules `docker build --check` applies, without a daemon. Base images are
// not fetched (offline, fast): a stub resolver answers with an empty image
// for the requested platform, so only checks about the image contents are
// lost (none of BuildKit's rules need them).
func buildkitChecks(ctx context.Context, f File, opts Options) ([]Finding, error) {
	sm := llb.NewSourceMap(nil, f.Path, "Dockerfile", f.Data)
	sm.Definition = &llb.Definition{} // the linter records the source; no LLB is built
	res, err := dockerfile2llb.DockerfileLint(ctx, f.Data, dockerfile2llb.ConvertOpt{
		Config: dockerui.Config{
			BuildArgs: opts.BuildArgs,
			Target:    opts.Target,
		},
		SourceMap:    sm,
		MetaResolver: stubResolver{},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: BuildKit checks: %w", f.Path, err)
	}
	var out []Finding
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 && w.Location.Ranges[0].Start != nil {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		msg := w.Detail
		if msg == "" {
			msg = w.Description
		}
		out = append(out, Finding{Rule: w.RuleName, Source: SourceBuildKit, Severity: Warning,
			Line: line, Message: msg, DocURL: w.URL})
	}
	// A build error from the linter (e.g. an unknown --target, a FROM that
	// names no image) means the build would fail: report it as an error
	// finding, not a parse failure, since the Dockerfile itself parsed.
	if res.Error != nil {
		line := 0
		if len(res.Error.Location.Ranges) > 0 && res.Error.Location.Ranges[0].Start != nil {
			line = int(res.Error.Location.Ranges[0].Start.Line)
		}
		out = append(out, Finding{Rule: "BuildError", Source: SourceBuildKit, Severity: Error,
			Line: line, Message: strings.TrimSpace(res.Error.Message)})
	}
	return out, nil
}

// stubResolver answers every base-image lookup with an empty image for the
// platform asked, without any network.
type stubResolver struct{}

func (stubResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	p := ocispecs.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		p = *opt.ImageOpt.Platform
	}
	img := ocispecs.Image{Platform: p, RootFS: ocispecs.RootFS{Type: "layers",
		DiffIDs: []digest.Digest{digest.FromString("gantry-lint-stub-layer")}}}
	dt, err := json.Marshal(img)
	return ref, "", dt, err
}
