package builder

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

var (
	dImage = "sha256:" + strings.Repeat("1", 64)
	dAtt   = "sha256:" + strings.Repeat("2", 64)
	dList  = "sha256:" + strings.Repeat("3", 64)
	dOther = "sha256:" + strings.Repeat("4", 64)
)

func TestExportedDigest(t *testing.T) {
	for _, tc := range []struct {
		id       string
		d        string
		list, ok bool
	}{
		{"exporting manifest " + dImage, dImage, false, true},
		{"exporting manifest list " + dList, dList, true, true},
		{"exporting attestation manifest " + dAtt, "", false, false},
		{"exporting config " + dImage, "", false, false},
		{"exporting manifest sha256:xyz", "", false, false},
		{"exporting manifest list " + dList + " ", "", false, false},
		{"exporting manifest ", "", false, false},
		{"pushing manifest for registry.example/app", "", false, false},
		{"", "", false, false},
	} {
		d, list, ok := exportedDigest(tc.id)
		if d != tc.d || list != tc.list || ok != tc.ok {
			t.Errorf("exportedDigest(%q) = %q, %v, %v; want %q, %v, %v", tc.id, d, list, ok, tc.d, tc.list, tc.ok)
		}
	}
}

func FuzzExportedDigest(f *testing.F) {
	f.Add("exporting manifest " + dImage)
	f.Add("exporting manifest list " + dList)
	f.Add("exporting attestation manifest " + dAtt)
	f.Add("pushing manifest for r/app")
	f.Fuzz(func(t *testing.T, id string) {
		d, list, ok := exportedDigest(id)
		if !ok {
			if d != "" || list {
				t.Fatalf("not ok but %q, %v", d, list)
			}
			return
		}
		if _, err := digest.Parse(d); err != nil {
			t.Fatalf("%q gave digest %q: %v", id, d, err)
		}
		prefix := statusManifest
		if list {
			prefix = statusManifestList
		}
		if id != prefix+d {
			t.Fatalf("%q gave %q (list %v): not the whole id", id, d, list)
		}
	})
}

// status is one progress update holding the given statuses; done marks
// them completed.
func status(done bool, ids ...string) *client.SolveStatus {
	s := &client.SolveStatus{}
	now := time.Now()
	for _, id := range ids {
		vs := &client.VertexStatus{ID: id}
		if done {
			vs.Completed = &now
		}
		s.Statuses = append(s.Statuses, vs)
	}
	return s
}

// fakeFetch records the digests it is asked to read and answers each with
// a result naming it, or err.
type fakeFetch struct {
	mu   sync.Mutex
	got  []string
	err  error
	gate chan struct{} // when set, fetches wait for it or their context
}

func (f *fakeFetch) fetch(ctx context.Context, res *Result) error {
	f.mu.Lock()
	f.got = append(f.got, res.Digest)
	f.mu.Unlock()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.err != nil {
		return f.err
	}
	res.MediaType, res.Size = "read "+res.Digest, 42
	res.ProvenanceDigest = dAtt
	res.Images = []PlatformImage{{Platform: "linux/amd64", Digest: dImage}}
	return nil
}

func (f *fakeFetch) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

// What BuildKit reports for a push by digest with provenance, in order.
func provenanceStatuses() []*client.SolveStatus {
	return []*client.SolveStatus{
		status(false, "exporting layers"), status(true, "exporting layers"),
		status(false, "exporting manifest "+dImage), status(true, "exporting manifest "+dImage),
		status(true, "exporting config "+dOther),
		status(true, "exporting attestation manifest "+dAtt),
		status(false, "exporting manifest list "+dList), status(true, "exporting manifest list "+dList),
		status(false, "pushing layers"), status(true, "pushing layers"),
		status(false, "pushing manifest for registry.example/app"),
	}
}

func TestEarlyReadBack(t *testing.T) {
	for _, tc := range []struct {
		name     string
		statuses []*client.SolveStatus
		final    string // the digest Solve returns
		fetchErr error
		started  string // the digest read early
		used     bool   // the early read is the result
	}{
		{"index, push done", append(provenanceStatuses(), status(true, "pushing manifest for registry.example/app")),
			dList, nil, dList, true},
		{"push not reported done: no early read", provenanceStatuses(), dList, nil, "", false},
		{"single manifest, no index", []*client.SolveStatus{
			status(true, "exporting manifest "+dImage), status(true, "exporting config "+dOther),
			status(true, "pushing manifest for registry.example/app:v1")}, dImage, nil, dImage, true},
		// The result names only what Solve returned: a read of another
		// digest is discarded (and the read-back runs for the right one).
		{"Solve returns another digest", append(provenanceStatuses(), status(true, "pushing manifest for registry.example/app")),
			dOther, nil, dList, false},
		{"early read failed", append(provenanceStatuses(), status(true, "pushing manifest for registry.example/app")),
			dList, errors.New("registry said 404"), dList, false},
		{"no digest before the push", []*client.SolveStatus{status(true, "pushing manifest for registry.example/app")},
			dList, nil, "", false},
		// A manifest after its list (it never comes in this order) does
		// not replace the list as the top.
		{"list stays the top", append(provenanceStatuses(), status(true, "exporting manifest "+dOther),
			status(true, "pushing manifest for registry.example/app")), dList, nil, dList, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeFetch{err: tc.fetchErr}
			e := newEarlyReadBack(context.Background(), "registry.example/app", f.fetch)
			for _, s := range tc.statuses {
				e.observe(s)
			}
			got := e.take(tc.final)
			e.stop()
			calls := f.calls()
			if tc.started == "" && len(calls) != 0 || tc.started != "" && (len(calls) != 1 || calls[0] != tc.started) {
				t.Errorf("early reads %v, want %q", calls, tc.started)
			}
			if (got != nil) != tc.used {
				t.Fatalf("early result used: %v, want %v", got != nil, tc.used)
			}
			if got != nil && (got.Digest != tc.final || got.Ref != "registry.example/app@"+tc.final || got.MediaType != "read "+tc.final) {
				t.Errorf("early result %+v is not the read of %s", got, tc.final)
			}
		})
	}
}

// A build that ends without using the early read (Solve failed after the
// push, or returned another digest) cancels it and waits for it: no
// goroutine outlives Build.
func TestEarlyReadBackStopCancels(t *testing.T) {
	f := &fakeFetch{gate: make(chan struct{})}
	e := newEarlyReadBack(context.Background(), "registry.example/app", f.fetch)
	for _, s := range append(provenanceStatuses(), status(true, "pushing manifest for registry.example/app")) {
		e.observe(s)
	}
	stopped := make(chan struct{})
	go func() { e.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not cancel the running read")
	}
	select {
	case <-e.done:
	default:
		t.Fatal("stop returned before the read ended")
	}
	if !errors.Is(e.err, context.Canceled) {
		t.Errorf("read ended with %v, want context.Canceled", e.err)
	}
}
