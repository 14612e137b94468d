package builder

import (
	"context"
	"strings"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

// BuildKit's image exporter names what it writes and pushes in its progress
// statuses (exporter/containerimage/writer.go and util/push/push.go):
//
//	exporting manifest sha256:…        an image manifest
//	exporting manifest list sha256:…   the index over them (with provenance
//	                                   or several platforms), written last
//	pushing manifest for REPO          done: the registry has every manifest
const (
	statusManifest     = "exporting manifest "
	statusManifestList = "exporting manifest list "
	statusPushManifest = "pushing manifest for "
)

// exportedDigest reads the digest out of an exporter status id: the image
// manifest's or the manifest list's (list true). ok is false for any other
// status, or a digest that does not parse.
func exportedDigest(id string) (d string, list, ok bool) {
	rest, list := strings.CutPrefix(id, statusManifestList)
	if !list {
		if rest, ok = strings.CutPrefix(id, statusManifest); !ok {
			return "", false, false
		}
	}
	if _, err := digest.Parse(rest); err != nil {
		return "", false, false
	}
	return rest, list, true
}

// earlyReadBack reads the pushed image back while BuildKit is still
// finishing the build. Once the exporter reports the push done, the
// registry holds the image, but the build goes on for a while (BuildKit
// records the build in its history) before Solve returns the digest: the
// read-back runs in that time instead of after it.
//
// What it reads is used only when the digest it read is the one BuildKit's
// exporter returns when Solve ends (the only digest the result ever names),
// and the content read is checked against that digest, as any read-back is:
// the progress statuses only decide when to start, never what the result
// says. Without a matching early read the read-back runs after Solve, as
// before.
type earlyReadBack struct {
	ctx    context.Context
	cancel context.CancelFunc
	repo   string // the repository pushed to: the result's Ref is repo@digest
	// fetch reads an image back into a result (Builder.readBack).
	fetch func(context.Context, *Result) error

	// Set by observe, from the progress goroutine; read after it ended.
	cand     string // the top-level digest written so far
	fromList bool   // cand is a manifest list's
	started  string // the digest being read early ("": none)

	done chan struct{}
	res  *Result
	err  error
}

func newEarlyReadBack(ctx context.Context, repo string, fetch func(context.Context, *Result) error) *earlyReadBack {
	ctx, cancel := context.WithCancel(ctx)
	return &earlyReadBack{ctx: ctx, cancel: cancel, repo: repo, fetch: fetch, done: make(chan struct{})}
}

// observe follows the build's statuses; it starts the read-back when the
// push of the manifests is done. Called from one goroutine, in order.
func (e *earlyReadBack) observe(s *client.SolveStatus) {
	for _, st := range s.Statuses {
		if d, list, ok := exportedDigest(st.ID); ok {
			// A manifest list is written after its manifests and is the
			// top; an image manifest is the top only when no list comes.
			if list || !e.fromList {
				e.cand, e.fromList = d, list
			}
			continue
		}
		if e.started == "" && e.cand != "" && st.Completed != nil && strings.HasPrefix(st.ID, statusPushManifest) {
			e.started = e.cand
			res := &Result{Digest: e.cand, Ref: e.repo + "@" + e.cand}
			go func() {
				defer close(e.done)
				e.err = e.fetch(e.ctx, res)
				e.res = res
			}()
		}
	}
}

// take returns what was read early for dgst, the digest Solve returned,
// when it matched and the read succeeded; else nil. Call it once the
// progress goroutine has ended.
func (e *earlyReadBack) take(dgst string) *Result {
	if e.started == "" || e.started != dgst {
		return nil
	}
	<-e.done
	if e.err != nil {
		return nil
	}
	return e.res
}

// stop cancels a read still running and waits for it.
func (e *earlyReadBack) stop() {
	e.cancel()
	if e.started != "" {
		<-e.done
	}
}
