// Package builder builds function images with BuildKit: the Dockerfile
// frontend on a pool of buildkitd daemons, pushed to the registry by digest,
// with SLSA provenance attached. Dockerfile lint lives in builder/lint.
//
// The pipeline calls New once and Build per run; `gantry build` does the
// same for one build.
package builder

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/identity"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	"github.com/moby/buildkit/session/secrets/secretsprovider"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tonistiigi/fsutil"

	"github.com/gantry-dev/gantry/builder/lint"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
)

// Options configure a Builder; FromConfig fills them from the config file.
type Options struct {
	// Addrs is the pool of buildkitd addresses.
	Addrs []string
	// TLS is used for tcp:// addresses.
	TLS TLS
	// DialTimeout bounds the health check of one daemon.
	DialTimeout time.Duration
	// Timeout bounds one build, push and read-back included. 0: no bound
	// beyond the caller's context.
	Timeout time.Duration
	// Provenance is "max", "min" or "off".
	Provenance string
	// Platforms to build for; empty means the daemon's platform.
	Platforms []string
	// CacheImport and CacheExport are registry cache references;
	// CacheMode is "min" or "max".
	CacheImport []string
	CacheExport string
	CacheMode   string
	// Registry decides plain-HTTP hosts and credentials, for the push (via
	// the build session) and for reading the pushed image back.
	Registry *oci.Client
	// AuthDir is the directory of the Docker config.json whose credentials
	// buildkitd uses to push (registry.authDir). Empty: $DOCKER_CONFIG or
	// ~/.docker.
	AuthDir string
}

// FromConfig returns the options the configuration describes.
func FromConfig(b config.Builder, reg *oci.Client, r config.Registry) Options {
	return Options{
		Addrs:       b.Addrs,
		TLS:         TLS{CACert: b.TLS.CACert, Cert: b.TLS.Cert, Key: b.TLS.Key, ServerName: b.TLS.ServerName},
		DialTimeout: b.DialTimeout,
		Timeout:     b.Timeout,
		Provenance:  b.Provenance,
		Platforms:   b.Platforms,
		CacheImport: b.Cache.Import,
		CacheExport: b.Cache.Export,
		CacheMode:   b.Cache.Mode,
		Registry:    reg,
		AuthDir:     r.AuthDir,
	}
}

// Builder runs builds on a pool of daemons. It is safe for concurrent use.
type Builder struct {
	pool *Pool
	opts Options
	auth *configfile.ConfigFile
}

// New connects (lazily) to the daemons in opts.
func New(opts Options) (*Builder, error) {
	switch opts.Provenance {
	case "":
		opts.Provenance = "max"
	case "max", "min", "off":
	default:
		return nil, fmt.Errorf("builder: provenance %q (allowed: max, min, off)", opts.Provenance)
	}
	if opts.Registry == nil {
		return nil, errors.New("builder: no registry client")
	}
	auth, err := loadAuth(opts.AuthDir)
	if err != nil {
		return nil, err
	}
	pool, err := NewPool(opts.Addrs, opts.TLS, opts.DialTimeout)
	if err != nil {
		return nil, err
	}
	return &Builder{pool: pool, opts: opts, auth: auth}, nil
}

func loadAuth(dir string) (*configfile.ConfigFile, error) {
	if dir == "" {
		dir = dockerconfig.Dir()
	}
	cf, err := dockerconfig.Load(dir)
	if err != nil {
		// Name the file, never its content: it holds credentials.
		return nil, fmt.Errorf("builder: registry credentials in %s: not a valid Docker config.json", filepath.Join(dir, dockerconfig.ConfigFileName))
	}
	return cf, nil
}

// Close releases the daemon connections.
func (b *Builder) Close() error { return b.pool.Close() }

// Request is one build.
type Request struct {
	// Root, when set, confines ContextDir and Dockerfile: both must lie
	// inside it once symlinks are resolved. The pipeline sets it to the
	// checkout, since the paths come from the pushed repository's own
	// configuration and must not reach the worker's other files.
	Root string
	// ContextDir is the build context directory.
	ContextDir string
	// Dockerfile is the Dockerfile path, relative to ContextDir unless
	// absolute. Empty: ContextDir/Dockerfile.
	Dockerfile string
	// Target is the stage to build; empty: the last one.
	Target string
	// BuildArgs are ARG values. Never put secrets here: use Secrets.
	BuildArgs map[string]string
	// Secrets maps a secret id (RUN --mount=type=secret,id=ID) to the file
	// that holds it. Secrets reach the build through the session only: they
	// are not in the image, its history or its provenance.
	Secrets map[string]string
	// Image is the repository to push to (repo or repo:tag; a digest is not
	// allowed). Without a tag the image is pushed by digest only.
	Image string
	// Push pushes the image; false builds it (and checks it builds) only.
	Push bool
	// Platforms override Options.Platforms when set.
	Platforms []string
	// NoCache ignores the build cache.
	NoCache bool
	// ID is BuildKit's id for the build (shown by `buildctl debug
	// history`), e.g. the pipeline run id: letters, digits, - and _, at
	// most 64. Empty: a random id.
	ID string
}

// Result is a finished build.
type Result struct {
	// Digest is the pushed manifest's digest: an image index when
	// provenance or several platforms are on, else an image manifest.
	Digest string `json:"digest"`
	// Ref is Image@Digest: the only reference later stages should use.
	Ref string `json:"ref"`
	// MediaType of the manifest at Digest.
	MediaType string `json:"mediaType,omitempty"`
	// Size is the compressed size of the image(s): configs and layers of
	// every platform's manifest (attestations not counted).
	Size int64 `json:"size"`
	// Images are the per-platform image manifests under Digest.
	Images []PlatformImage `json:"images,omitempty"`
	// ProvenanceDigest is the digest of the attestation manifest holding
	// the SLSA provenance (for the first platform), when provenance is on.
	ProvenanceDigest string `json:"provenanceDigest,omitempty"`
	// Duration is the wall time of the build, push and read-back.
	Duration time.Duration `json:"duration"`
	// Daemon is the buildkitd address that ran the build.
	Daemon string `json:"daemon"`
	// BuildRef is BuildKit's id of the build (buildctl debug history).
	BuildRef string `json:"buildRef"`
	// Warnings are BuildKit's build-check warnings raised during the build.
	Warnings []string `json:"warnings,omitempty"`
}

// PlatformImage is one platform's manifest in the pushed index.
type PlatformImage struct {
	Platform         string `json:"platform"`
	Digest           string `json:"digest"`
	ProvenanceDigest string `json:"provenanceDigest,omitempty"`
}

var (
	buildArgName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	buildID      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
)

// prepared is a validated request.
type prepared struct {
	contextDir, dockerDir, dockerName string
	dockerfileShown                   string // how errors name the Dockerfile
	image                             name.Reference
	tagged                            bool
}

func (b *Builder) prepare(req Request) (*prepared, error) {
	if req.ContextDir == "" {
		return nil, errors.New("build: no context directory")
	}
	ctxDir, err := filepath.Abs(req.ContextDir)
	if err != nil {
		return nil, fmt.Errorf("build: context %s: %w", req.ContextDir, err)
	}
	if fi, err := os.Stat(ctxDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("build: context %s is not a directory", req.ContextDir)
	}
	df := req.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(ctxDir, df)
	}
	if fi, err := os.Stat(df); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("build: Dockerfile %s not found (give --file relative to the context, or an absolute path)", df)
	}
	if req.Root != "" {
		for _, path := range []string{ctxDir, df} {
			if err := within(req.Root, path); err != nil {
				return nil, err
			}
		}
	}
	p := &prepared{contextDir: ctxDir, dockerDir: filepath.Dir(df), dockerName: filepath.Base(df), dockerfileShown: df}
	if req.Root != "" {
		// Errors name the Dockerfile as the repository knows it, not by
		// the worker's checkout path.
		if rel, err := filepath.Rel(req.Root, df); err == nil {
			p.dockerfileShown = filepath.ToSlash(rel)
		}
	}
	if req.Image == "" {
		return nil, errors.New("build: no image repository to push to")
	}
	ref, err := b.opts.Registry.ParseReference(req.Image)
	if err != nil {
		return nil, fmt.Errorf("build: image %q: %w", req.Image, err)
	}
	if _, ok := ref.(name.Digest); ok {
		return nil, fmt.Errorf("build: image %q: give a repository (optionally with a tag), not a digest: the digest is the build's output", req.Image)
	}
	p.image = ref
	// ParseReference adds :latest to a bare repository; only a tag the
	// user wrote counts (the last path element carries it).
	p.tagged = strings.Contains(req.Image[strings.LastIndex(req.Image, "/")+1:], ":")
	if req.ID != "" && !buildID.MatchString(req.ID) {
		return nil, fmt.Errorf("build: id %q: use letters, digits, - and _ (at most 64)", req.ID)
	}
	for k := range req.BuildArgs {
		if !buildArgName.MatchString(k) {
			return nil, fmt.Errorf("build: build arg %q is not a valid ARG name", k)
		}
		// Build args are recorded in the image history and in max-mode
		// provenance: a secret given as one would be published.
		if why, bad := lint.LooksLikeSecret(k, req.BuildArgs[k]); bad {
			return nil, fmt.Errorf("build: build arg %s refused: %s, and build args are recorded in the image and its provenance; pass it as a build secret (--secret id=%s,src=FILE, RUN --mount=type=secret,id=%s)",
				k, why, strings.ToLower(k), strings.ToLower(k))
		}
	}
	for id, path := range req.Secrets {
		if id == "" || path == "" {
			return nil, fmt.Errorf("build: secret %q needs an id and a file", id)
		}
		if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
			// The path is not secret; the content is never read here.
			return nil, fmt.Errorf("build: secret %s: file %s not readable", id, path)
		}
	}
	return p, nil
}

// within fails unless path, symlinks resolved, lies inside root.
func within(root, path string) error {
	r, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("build: root %s: %w", root, err)
	}
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("build: %s: %w", path, err)
	}
	rel, err := filepath.Rel(r, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("build: %s is outside %s: the context and the Dockerfile must be inside the source tree", path, root)
	}
	return nil
}

// solveOpt builds BuildKit's request from a validated one.
func (b *Builder) solveOpt(req Request, p *prepared) (client.SolveOpt, error) {
	attrs := map[string]string{"filename": p.dockerName}
	if req.Target != "" {
		attrs["target"] = req.Target
	}
	for _, k := range slices.Sorted(maps.Keys(req.BuildArgs)) {
		attrs["build-arg:"+k] = req.BuildArgs[k]
	}
	platforms := b.opts.Platforms
	if len(req.Platforms) > 0 {
		platforms = req.Platforms
	}
	if len(platforms) > 0 {
		attrs["platform"] = strings.Join(platforms, ",")
	}
	if b.opts.Provenance != "off" {
		attrs["attest:provenance"] = "mode=" + b.opts.Provenance
	}
	if req.NoCache {
		attrs["no-cache"] = ""
	}
	ctxFS, err := fsutil.NewFS(p.contextDir)
	if err != nil {
		return client.SolveOpt{}, fmt.Errorf("build: context %s: %w", p.contextDir, err)
	}
	dfFS, err := fsutil.NewFS(p.dockerDir)
	if err != nil {
		return client.SolveOpt{}, fmt.Errorf("build: Dockerfile directory %s: %w", p.dockerDir, err)
	}
	host := p.image.Context().RegistryStr()
	export := map[string]string{
		string(exptypes.OptKeyName): p.image.Context().Name(),
		string(exptypes.OptKeyPush): fmt.Sprint(req.Push),
	}
	if p.tagged {
		export[string(exptypes.OptKeyName)] = p.image.Name()
	} else {
		// No tag: nothing mutable is written to the registry at all.
		export[string(exptypes.OptKeyPushByDigest)] = "true"
	}
	if b.opts.Registry.IsInsecure(host) {
		export[string(exptypes.OptKeyInsecure)] = "true"
	}
	attach := []session.Attachable{authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: authprovider.LoadAuthConfig(b.auth),
	})}
	if len(req.Secrets) > 0 {
		var srcs []secretsprovider.Source
		for _, id := range slices.Sorted(maps.Keys(req.Secrets)) {
			srcs = append(srcs, secretsprovider.Source{ID: id, FilePath: req.Secrets[id]})
		}
		store, err := secretsprovider.NewStore(srcs)
		if err != nil {
			return client.SolveOpt{}, fmt.Errorf("build: secrets: %w", err)
		}
		attach = append(attach, secretsprovider.NewSecretProvider(store))
	}
	so := client.SolveOpt{
		Frontend:      "dockerfile.v0",
		FrontendAttrs: attrs,
		LocalMounts:   map[string]fsutil.FS{"context": ctxFS, "dockerfile": dfFS},
		Exports:       []client.ExportEntry{{Type: client.ExporterImage, Attrs: export}},
		Session:       attach,
		Ref:           cmpOr(req.ID, identity.NewID()),
	}
	for _, ref := range b.opts.CacheImport {
		so.CacheImports = append(so.CacheImports, client.CacheOptionsEntry{Type: "registry", Attrs: b.cacheAttrs(ref)})
	}
	if b.opts.CacheExport != "" {
		attrs := b.cacheAttrs(b.opts.CacheExport)
		attrs["mode"] = cmpOr(b.opts.CacheMode, "min")
		so.CacheExports = append(so.CacheExports, client.CacheOptionsEntry{Type: "registry", Attrs: attrs})
	}
	return so, nil
}

func (b *Builder) cacheAttrs(ref string) map[string]string {
	attrs := map[string]string{"ref": ref}
	if r, err := name.ParseReference(ref); err == nil && b.opts.Registry.IsInsecure(r.Context().RegistryStr()) {
		attrs["registry.insecure"] = "true"
	}
	return attrs
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Build runs one build on the least busy healthy daemon, streams its
// progress, pushes the image by digest and reads it back from the registry
// (as soon as the push is done, while BuildKit finishes the build: see
// earlyReadBack).
// Cancelling ctx stops the build on the daemon. A failing step returns a
// *StepError; no reachable daemon returns an *UnreachableError.
func (b *Builder) Build(ctx context.Context, req Request, progress Progress) (*Result, error) {
	start := time.Now()
	p, err := b.prepare(req)
	if err != nil {
		return nil, err
	}
	so, err := b.solveOpt(req, p)
	if err != nil {
		return nil, err
	}
	display, err := progress.newDisplay()
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if b.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, b.opts.Timeout, fmt.Errorf("build took longer than builder.timeout (%s)", b.opts.Timeout))
		defer cancel()
	}
	d, release, err := b.pool.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer release()

	status := make(chan *client.SolveStatus)
	t := newTracker()
	events := progress.Events
	var early *earlyReadBack
	if req.Push {
		early = newEarlyReadBack(ctx, p.image.Context().Name(), b.readBack)
		defer early.stop()
		events = func(s *client.SolveStatus) {
			early.observe(s)
			if progress.Events != nil {
				progress.Events(s)
			}
		}
	}
	wait := pump(status, t, display, events)
	resp, err := d.c.Solve(ctx, nil, so, status) // closes status
	wait()
	if err != nil {
		return nil, b.solveError(ctx, d.addr, p, t, err)
	}
	res := &Result{Daemon: d.addr, BuildRef: so.Ref}
	for _, w := range t.warns {
		res.Warnings = append(res.Warnings, string(w.Short))
	}
	res.Digest = resp.ExporterResponse[exptypes.ExporterImageDigestKey]
	if _, err := digest.Parse(res.Digest); err != nil {
		return nil, fmt.Errorf("build on %s finished but BuildKit returned no valid image digest (%q)", d.addr, res.Digest)
	}
	if dt, err := base64.StdEncoding.DecodeString(resp.ExporterResponse[exptypes.ExporterImageDescriptorKey]); err == nil {
		var desc ocispecs.Descriptor
		if json.Unmarshal(dt, &desc) == nil {
			res.MediaType = desc.MediaType
		}
	}
	res.Ref = p.image.Context().Name() + "@" + res.Digest
	if req.Push {
		if got := early.take(res.Digest); got != nil {
			res.MediaType, res.Size, res.Images, res.ProvenanceDigest = got.MediaType, got.Size, got.Images, got.ProvenanceDigest
		} else if err := b.readBack(ctx, res); err != nil {
			return nil, err
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// solveError turns BuildKit's error into the user's error: which step,
// which exit code, the last lines of its output; or cancellation; or the
// daemon's address.
func (b *Builder) solveError(ctx context.Context, addr string, p *prepared, t *tracker, err error) error {
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, ctx.Err()) {
			return fmt.Errorf("build on %s stopped: %w (%w)", addr, cause, ctx.Err())
		}
		return fmt.Errorf("build on %s stopped: %w", addr, ctx.Err())
	}
	if se := stepError(err, t, p.dockerfileShown); se != nil {
		se.Daemon = addr
		return se
	}
	return fmt.Errorf("build on %s failed: %w", addr, err)
}
