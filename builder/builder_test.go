package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	moby_buildkit_v1 "github.com/moby/buildkit/api/services/control"
	"github.com/moby/buildkit/client"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/internal/testenv"
)

// fixture is a builder wired to the test environment.
type fixture struct {
	env *testenv.Env
	reg *oci.Client
	b   *Builder
}

func newFixture(t *testing.T, mutate ...func(*Options)) *fixture {
	t.Helper()
	env := testenv.Require(t)
	reg, err := oci.New(config.Registry{Insecure: []string{env.Registry}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Addrs: []string{env.BuildkitAddr}, DialTimeout: 5 * time.Second, Timeout: 5 * time.Minute,
		Provenance: "max", Registry: reg, AuthDir: t.TempDir()}
	for _, m := range mutate {
		m(&opts)
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &fixture{env: env, reg: reg, b: b}
}

// repo is a repository unique to this test, so parallel runs never collide.
func (f *fixture) repo(t *testing.T) string {
	return fmt.Sprintf("%s/test/builder-%s-%d", f.env.Registry,
		strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), time.Now().UnixNano())
}

// writeContext writes files into a fresh context dir.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const multiStage = `ARG BASE
FROM ${BASE} AS build
ARG GREETING=hello
RUN mkdir -p /out && echo "$GREETING from the build stage" > /out/greeting
FROM ${BASE}
COPY --from=build /out/greeting /srv/greeting
COPY app.txt /srv/app.txt
USER 1000:1000
CMD ["cat", "/srv/greeting"]
`

func TestBuildMultiStagePushesByDigestWithProvenance(t *testing.T) {
	f := newFixture(t)
	dir := writeContext(t, map[string]string{"Dockerfile": multiStage, "app.txt": "app " + t.Name()})
	repo := f.repo(t)
	var plain bytes.Buffer
	var events int
	res, err := f.b.Build(context.Background(), Request{
		ContextDir: dir, Image: repo, Push: true,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage, "GREETING": "hi-" + t.Name()},
	}, Progress{Out: &plain, Events: func(*client.SolveStatus) { events++ }})
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, plain.String())
	}
	if !strings.HasPrefix(res.Digest, "sha256:") || res.Ref != repo+"@"+res.Digest || res.Daemon != f.env.BuildkitAddr {
		t.Fatalf("result %+v", res)
	}
	if res.ProvenanceDigest == "" || res.Size <= 0 || len(res.Images) != 1 || res.Duration <= 0 {
		t.Fatalf("result lacks provenance, size, images or duration: %+v", res)
	}
	// The plain stream is buildctl's --progress=plain format.
	if events == 0 || !strings.Contains(plain.String(), "#1 [internal] load build definition from Dockerfile") ||
		!strings.Contains(plain.String(), "RUN mkdir -p /out") || !strings.Contains(plain.String(), "DONE") {
		t.Errorf("progress: %d events, plain output:\n%s", events, plain.String())
	}

	// Read everything back by digest, independently of the builder.
	ref, err := f.reg.ParseDigest(res.Ref)
	if err != nil {
		t.Fatal(err)
	}
	opts := f.reg.RemoteOptions(context.Background())
	idx, err := remote.Index(ref, opts...)
	if err != nil {
		t.Fatalf("pushed digest is not an index in the registry: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var imgDesc, attDesc *v1.Descriptor
	for i := range im.Manifests {
		m := &im.Manifests[i]
		if m.Annotations[refTypeAnnotation] == attestationManifest {
			attDesc = m
		} else {
			imgDesc = m
		}
	}
	if imgDesc == nil || attDesc == nil || attDesc.Annotations[refDigestAnnotation] != imgDesc.Digest.String() {
		t.Fatalf("index should hold the image and its attestation manifest: %+v", im.Manifests)
	}
	if attDesc.Digest.String() != res.ProvenanceDigest || imgDesc.Digest.String() != res.Images[0].Digest {
		t.Errorf("result digests %+v do not match the index %+v", res, im.Manifests)
	}
	img, err := remote.Image(ref.Context().Digest(imgDesc.Digest.String()), opts...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "1000:1000" || strings.Join(cf.Config.Cmd, " ") != "cat /srv/greeting" {
		t.Errorf("image config user %q cmd %q", cf.Config.User, cf.Config.Cmd)
	}

	prov := readProvenance(t, ref.Context().Digest(attDesc.Digest.String()), opts)
	if !strings.HasPrefix(prov.PredicateType, "https://slsa.dev/provenance/") {
		t.Errorf("predicate type %q", prov.PredicateType)
	}
	if len(prov.Subject) == 0 || "sha256:"+prov.Subject[0].Digest["sha256"] != imgDesc.Digest.String() {
		t.Errorf("provenance subject %+v is not the image %s", prov.Subject, imgDesc.Digest)
	}
	// mode=max records the build args and the full LLB definition.
	if p := string(prov.Predicate); !strings.Contains(p, `"build-arg:GREETING":"hi-`+t.Name()) || !strings.Contains(p, `"llbDefinition"`) {
		t.Errorf("max-mode provenance lacks the build arg or the LLB definition:\n%.2000s", p)
	}

	// Pushed by digest only: no tag was written to the repository.
	tags, err := remote.List(ref.Context(), opts...)
	var terr *transport.Error
	if err != nil && !(errors.As(err, &terr) && terr.StatusCode == 404) {
		t.Fatal(err)
	}
	if len(tags) != 0 {
		t.Errorf("push by digest wrote tags %v", tags)
	}
}

type statement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate json.RawMessage `json:"predicate"`
}

func readProvenance(t *testing.T, ref name.Digest, opts []remote.Option) statement {
	t.Helper()
	att, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := att.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		if !strings.Contains(l.Annotations["in-toto.io/predicate-type"], "slsa.dev/provenance") {
			continue
		}
		layer, err := att.LayerByDigest(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var st statement
		if err := json.NewDecoder(io.LimitReader(rc, 8<<20)).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	t.Fatalf("attestation manifest has no SLSA provenance layer: %+v", m.Layers)
	return statement{}
}

func TestBuildTaggedPushesTagAndReturnsDigest(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Provenance = "off" })
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nUSER 1000\n"})
	repo := f.repo(t)
	res, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: repo + ":v1", Push: true,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage}}, Progress{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ProvenanceDigest != "" || strings.Contains(res.MediaType, "index") {
		t.Errorf("provenance off: want a plain manifest, got %+v", res)
	}
	tagRef, err := f.reg.ParseReference(repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(tagRef, f.reg.RemoteOptions(context.Background())...)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != res.Digest {
		t.Errorf("tag v1 points at %s, build returned %s", desc.Digest, res.Digest)
	}
}

func TestBuildFailingRunNamesStepExitCodeAndOutput(t *testing.T) {
	f := newFixture(t)
	// One output stream only: BuildKit batches stdout and stderr
	// separately, so their relative order is not defined.
	df := "ARG BASE\nFROM ${BASE}\nRUN echo first line\n" +
		"RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do echo \"out $i\"; done; echo 'fatal: broken'; exit 3\n" +
		"USER 1000\n"
	dir := writeContext(t, map[string]string{"Dockerfile": df})
	_, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: f.repo(t), Push: true,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage}}, Progress{})
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("want *StepError, got %T %v", err, err)
	}
	if se.ExitCode != 3 || se.Line != 4 || !strings.Contains(se.Step, "RUN for i in") || se.File != filepath.Join(dir, "Dockerfile") {
		t.Errorf("step error %+v", se)
	}
	if len(se.Output) != tailLines || se.Output[len(se.Output)-1] != "fatal: broken" || !strings.Contains(strings.Join(se.Output, "\n"), "out 25") {
		t.Errorf("output tail %q", se.Output)
	}
	msg := err.Error()
	for _, want := range []string{"exit code 3", "Dockerfile:4", "RUN for i in", "fatal: broken"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error message lacks %q:\n%s", want, msg)
		}
	}
}

func TestBuildFailingCopyNamesStep(t *testing.T) {
	f := newFixture(t)
	dir := writeContext(t, map[string]string{"fn/Dockerfile": "ARG BASE\nFROM ${BASE}\nCOPY missing.txt /x\nUSER 1000\n"})
	_, err := f.b.Build(context.Background(), Request{Root: dir, ContextDir: filepath.Join(dir, "fn"), Image: f.repo(t), Push: true,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage}}, Progress{})
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("want *StepError, got %v", err)
	}
	// With a Root, the Dockerfile is named relative to it.
	if se.ExitCode != -1 || se.Line != 3 || se.File != "fn/Dockerfile" || !strings.Contains(err.Error(), "missing.txt") ||
		!strings.Contains(err.Error(), "(fn/Dockerfile:3)") || !IsBuildFailure(err) {
		t.Errorf("step error %+v: %v", se, err)
	}
}

func TestBuildRefusedDockerfileIsABuildFailure(t *testing.T) {
	f := newFixture(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN --bogus true\n"})
	_, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: f.repo(t), Push: true,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage}}, Progress{})
	var se *StepError
	if !errors.As(err, &se) || !IsBuildFailure(err) {
		t.Fatalf("want *StepError, got %T %v", err, err)
	}
	if se.Step != "" || se.Line != 3 || !strings.HasPrefix(err.Error(), "Dockerfile ("+filepath.Join(dir, "Dockerfile")+":3) failed") ||
		!strings.Contains(err.Error(), "--bogus") {
		t.Errorf("error %+v: %v", se, err)
	}
}

func TestBuildCancelStopsTheSolve(t *testing.T) {
	f := newFixture(t)
	dir := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf("ARG BASE\nFROM ${BASE}\nRUN echo %d && sleep 300\nUSER 1000\n", time.Now().UnixNano())})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id := fmt.Sprintf("gantry-test-cancel-%d", time.Now().UnixNano())
	var once sync.Once
	_, err := f.b.Build(ctx, Request{ContextDir: dir, Image: f.repo(t), Push: true, ID: id,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage}}, Progress{Events: func(s *client.SolveStatus) {
		for _, v := range s.Vertexes {
			if strings.Contains(v.Name, "sleep 300") && v.Started != nil {
				once.Do(cancel) // the step runs: now cancel
			}
		}
	}})
	if !errors.Is(err, context.Canceled) || IsBuildFailure(err) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	// The daemon must have stopped the build too: its history record for
	// this build completes (with an error) instead of running on.
	c, err := client.New(context.Background(), f.env.BuildkitAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hctx, hcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer hcancel()
	for {
		rec := history(hctx, t, c, id)
		if rec != nil && rec.CompletedAt != nil {
			if rec.Error == nil {
				t.Fatalf("cancelled build completed without error: %+v", rec)
			}
			return
		}
		select {
		case <-hctx.Done():
			t.Fatalf("build %s still running on the daemon after cancel (record %+v)", id, rec)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func history(ctx context.Context, t *testing.T, c *client.Client, ref string) *moby_buildkit_v1.BuildHistoryRecord {
	t.Helper()
	stream, err := c.ControlClient().ListenBuildHistory(ctx, &moby_buildkit_v1.BuildHistoryRequest{Ref: ref, EarlyExit: true})
	if err != nil {
		t.Fatal(err)
	}
	var rec *moby_buildkit_v1.BuildHistoryRecord
	for {
		ev, err := stream.Recv()
		if err != nil {
			return rec
		}
		if ev.Record != nil && ev.Record.Ref == ref {
			rec = ev.Record
		}
	}
}

func TestTwoBuildsInParallel(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	results := make([]*Result, 2)
	errs := make([]error, 2)
	for i := range 2 {
		dir := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf(
			"ARG BASE\nFROM ${BASE}\nRUN echo build-%d-%d > /id && sleep 1\nUSER 1000\n", i, time.Now().UnixNano())})
		repo := f.repo(t) + fmt.Sprint(i)
		wg.Go(func() {
			results[i], errs[i] = f.b.Build(context.Background(), Request{ContextDir: dir, Image: repo, Push: true,
				BuildArgs: map[string]string{"BASE": f.env.BaseImage}}, Progress{Out: io.Discard})
		})
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
	}
	if results[0].Digest == results[1].Digest || results[0].BuildRef == results[1].BuildRef {
		t.Errorf("parallel builds collided: %+v %+v", results[0], results[1])
	}
}

func TestBuildSecretsNeverInImageOrProvenance(t *testing.T) {
	f := newFixture(t)
	secret := fmt.Sprintf("s3cr3t-%d", time.Now().UnixNano())
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\n" +
		"RUN --mount=type=secret,id=token,required=true test \"$(cat /run/secrets/token)\" = \"" + secret[:7] + "$(echo " + secret[7:] + ")\" && echo ok > /checked\nUSER 1000\n"})
	res, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: f.repo(t), Push: true,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage}, Secrets: map[string]string{"token": secretFile}}, Progress{})
	if err != nil {
		t.Fatalf("build with secret: %v", err)
	}
	ref, err := f.reg.ParseDigest(res.Ref)
	if err != nil {
		t.Fatal(err)
	}
	opts := f.reg.RemoteOptions(context.Background())
	prov := readProvenance(t, ref.Context().Digest(res.ProvenanceDigest), opts)
	img, err := remote.Image(ref.Context().Digest(res.Images[0].Digest), opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(prov.Predicate, []byte(secret)) || bytes.Contains(cfg, []byte(secret)) {
		t.Error("the secret's value leaked into the provenance or the image config")
	}
}

func TestBuildWithoutPush(t *testing.T) {
	f := newFixture(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nUSER 1000\n"})
	repo := f.repo(t)
	res, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: repo,
		BuildArgs: map[string]string{"BASE": f.env.BaseImage}}, Progress{})
	if err != nil {
		t.Fatal(err)
	}
	// An unparsable ref would make the Head below fail and the test pass.
	ref, err := f.reg.ParseDigest(res.Ref)
	if err != nil {
		t.Fatalf("build result ref %q: %v", res.Ref, err)
	}
	if _, err := remote.Head(ref, f.reg.RemoteOptions(context.Background())...); err == nil {
		t.Error("image reached the registry without Push")
	}
}

func TestPoolSkipsUnreachableDaemons(t *testing.T) {
	env := testenv.Require(t)
	bad := []string{"unix:///nonexistent/gantry/buildkitd.sock", "tcp://127.0.0.1:1"}

	t.Run("all unreachable", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.Addrs = bad; o.DialTimeout = 2 * time.Second })
		dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n"})
		_, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: f.repo(t), Push: true}, Progress{})
		var ue *UnreachableError
		if !errors.As(err, &ue) || len(ue.Tried) != 2 || IsBuildFailure(err) {
			t.Fatalf("want UnreachableError for both, got %v", err)
		}
		for _, a := range bad {
			if !strings.Contains(err.Error(), a) {
				t.Errorf("error does not name %s: %v", a, err)
			}
		}
	})
	t.Run("falls over to a reachable one", func(t *testing.T) {
		f := newFixture(t, func(o *Options) {
			o.Addrs = append(append([]string{}, bad...), env.BuildkitAddr)
			o.DialTimeout = 2 * time.Second
		})
		dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nUSER 1000\n"})
		for range 3 { // every start position of the round robin
			res, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: f.repo(t), Push: true,
				BuildArgs: map[string]string{"BASE": env.BaseImage}}, Progress{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Daemon != env.BuildkitAddr {
				t.Errorf("built on %s", res.Daemon)
			}
		}
	})
}

func TestRequestValidation(t *testing.T) {
	reg, err := oci.New(config.Registry{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Addrs: []string{"unix:///nonexistent.sock"}, Registry: reg, AuthDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n", "sub/Other": "FROM scratch\n"})
	secret := filepath.Join(dir, "Dockerfile")
	outside := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  Request
		want string // "" means valid
	}{
		{"valid", Request{ContextDir: dir, Image: "r.example/a/b"}, ""},
		{"valid other file", Request{ContextDir: dir, Dockerfile: "sub/Other", Image: "r.example/a/b:v1"}, ""},
		{"no context", Request{Image: "r.example/a"}, "context"},
		{"context not a dir", Request{ContextDir: secret, Image: "r.example/a"}, "not a directory"},
		{"no Dockerfile", Request{ContextDir: dir, Dockerfile: "nope", Image: "r.example/a"}, "not found"},
		{"no image", Request{ContextDir: dir}, "repository"},
		{"digest image", Request{ContextDir: dir, Image: "r.example/a@sha256:" + strings.Repeat("0", 64)}, "not a digest"},
		{"bad image", Request{ContextDir: dir, Image: "UPPER/Case"}, "image"},
		{"bad build arg", Request{ContextDir: dir, Image: "r.example/a", BuildArgs: map[string]string{"A B": "x"}}, "ARG name"},
		{"secret-looking build arg name", Request{ContextDir: dir, Image: "r.example/a", BuildArgs: map[string]string{"NPM_TOKEN": "x"}}, "build secret"},
		{"secret-looking build arg value", Request{ContextDir: dir, Image: "r.example/a", BuildArgs: map[string]string{"X": "AKIAIOSFODNN7EXAMPLE"}}, "AWS access key"},
		{"ordinary build arg", Request{ContextDir: dir, Image: "r.example/a", BuildArgs: map[string]string{"VERSION": "1.2.3", "TOKEN_URL": "https://x"}}, ""},
		{"secret file missing", Request{ContextDir: dir, Image: "r.example/a", Secrets: map[string]string{"t": "/nonexistent"}}, "not readable"},
		{"bad id", Request{ContextDir: dir, Image: "r.example/a", ID: "a/b"}, "id"},
		{"inside root", Request{Root: dir, ContextDir: filepath.Join(dir, "sub"), Dockerfile: "Other", Image: "r.example/a"}, ""},
		{"context escapes root", Request{Root: filepath.Join(dir, "sub"), ContextDir: dir, Dockerfile: "sub/Other", Image: "r.example/a"}, "outside"},
		{"dockerfile escapes root", Request{Root: dir, ContextDir: dir, Dockerfile: filepath.Join(outside, "Dockerfile"), Image: "r.example/a"}, "outside"},
		{"dotdot escapes root", Request{Root: filepath.Join(dir, "sub"), ContextDir: filepath.Join(dir, "sub", ".."), Image: "r.example/a"}, "outside"},
		{"symlink escapes root", Request{Root: dir, ContextDir: filepath.Join(dir, "link"), Image: "r.example/a"}, "outside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.prepare(tc.req)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid request refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			for _, v := range tc.req.BuildArgs {
				if err != nil && len(v) > 3 && strings.Contains(err.Error(), v) {
					t.Errorf("error echoes a build arg value: %v", err)
				}
			}
		})
	}
	if _, err := New(Options{Addrs: []string{"unix:///x"}, Registry: reg, Provenance: "maybe"}); err == nil {
		t.Error("bad provenance mode accepted")
	}
}

func TestRegistryCacheExportAndImport(t *testing.T) {
	env := testenv.Require(t)
	cacheRef := fmt.Sprintf("%s/test/builder-cache-%d:buildcache", env.Registry, time.Now().UnixNano())
	df := fmt.Sprintf("ARG BASE\nFROM ${BASE}\nRUN echo %d > /stamp\nUSER 1000\n", time.Now().UnixNano())
	dir := writeContext(t, map[string]string{"Dockerfile": df})

	exp := newFixture(t, func(o *Options) { o.CacheExport = cacheRef; o.CacheMode = "max" })
	if _, err := exp.b.Build(context.Background(), Request{ContextDir: dir, Image: exp.repo(t), Push: true,
		BuildArgs: map[string]string{"BASE": env.BaseImage}}, Progress{}); err != nil {
		t.Fatal(err)
	}
	ref, err := exp.reg.ParseReference(cacheRef)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, exp.reg.RemoteOptions(context.Background())...)
	if err != nil {
		t.Fatalf("cache not exported to %s: %v", cacheRef, err)
	}
	if !strings.Contains(string(desc.Manifest), "application/vnd.buildkit.cacheconfig.v0") {
		t.Errorf("%s is not a BuildKit cache manifest:\n%s", cacheRef, desc.Manifest)
	}

	imp := newFixture(t, func(o *Options) { o.CacheImport = []string{cacheRef} })
	var plain bytes.Buffer
	if _, err := imp.b.Build(context.Background(), Request{ContextDir: dir, Image: imp.repo(t), Push: true,
		BuildArgs: map[string]string{"BASE": env.BaseImage}}, Progress{Out: &plain}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plain.String(), "importing cache manifest from "+cacheRef) {
		t.Errorf("cache import not attempted:\n%s", plain.String())
	}
}

func TestTLSFilesAreChecked(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ca.pem")
	_, err := NewPool([]string{"tcp://127.0.0.1:1"}, TLS{CACert: missing}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "tcp://127.0.0.1:1") {
		t.Fatalf("missing CA file: err = %v, want an error naming the daemon", err)
	}
}

func TestProgressModes(t *testing.T) {
	var buf bytes.Buffer
	for _, tc := range []struct {
		mode string
		ok   bool
	}{{"", true}, {"plain", true}, {"auto", true}, {"rawjson", true}, {"tty", false}, {"fancy", false}} {
		t.Run(tc.mode, func(t *testing.T) {
			// A bytes.Buffer is no terminal: tty must be refused, auto falls back to plain.
			d, err := Progress{Out: &buf, Mode: tc.mode}.newDisplay()
			if (err == nil) != tc.ok || (tc.ok && d == nil) {
				t.Fatalf("mode %q: display %v, err %v", tc.mode, d, err)
			}
		})
	}
	if d, err := (Progress{Mode: "fancy"}).newDisplay(); d != nil || err != nil {
		t.Errorf("no Out: want no display and no error, got %v %v", d, err)
	}
}
