// Package scanner scans container images for vulnerabilities with Trivy,
// used as a library: the image is read from its registry by digest (no
// Docker engine), OS and language packages are analysed once, and the same
// analysis yields the findings and the CycloneDX SBOM.
//
// Two modes, one code path: embedded (Trivy in-process, its vulnerability DB
// downloaded from configurable OCI repositories into a cache dir and
// refreshed on a schedule) and server (a shared Trivy server does the
// vulnerability matching; this process still reads the image).
//
// Concurrency: Trivy keeps its DB handle in a process-wide variable, so a
// process holds at most one embedded Scanner (New refuses a second while the
// first is open). Share it: Scan is safe to call from many goroutines. Scans
// run concurrently against the shared read-only DB; a DB refresh waits for
// running scans and holds new ones back while it swaps the handle.
package scanner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/twitchtv/twirp"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	dbTypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/db"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	artimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/javadb"
	"github.com/aquasecurity/trivy/pkg/result"
	"github.com/aquasecurity/trivy/pkg/rpc/client"
	"github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/files"
	"github.com/gantry-dev/gantry/internal/oci"
	"github.com/gantry-dev/gantry/scanner/report"
)

// Mode names.
const (
	ModeEmbedded = "embedded"
	ModeServer   = "server"
)

// Options are what New needs besides the scanner section.
type Options struct {
	// Registry reaches the image's registry and the DB repositories.
	Registry *oci.Client
	// Log receives Gantry's own messages (not Trivy's, which go to
	// slog.Default()). Nil: discard.
	Log *slog.Logger
	// Now is the clock for DB freshness; nil means time.Now.
	Now func() time.Time
}

// Scanner scans images. Create it with New, share it, Close it.
type Scanner struct {
	cfg      config.Scanner
	reg      *oci.Client
	log      *slog.Logger
	now      func() time.Time
	cacheDir string
	mode     string

	// dbMu: scans hold it shared, a DB swap exclusively.
	dbMu   sync.RWMutex
	dbOpen bool
	status DBStatus
	// refreshMu serialises freshness checks and downloads.
	refreshMu sync.Mutex

	cache        cache.Cache // embedded: the layer cache, shared by scans
	closeCache   func()
	serverHeader http.Header
	javaDB       bool
	closed       bool
}

// active guards the process-wide Trivy DB handle.
var (
	activeMu sync.Mutex
	active   *Scanner
)

// EmbeddedOpen reports whether an embedded scanner is open in this process
// (and so holds Trivy's process-wide DB handle).
func EmbeddedOpen() bool {
	activeMu.Lock()
	defer activeMu.Unlock()
	return active != nil
}

// New prepares a scanner. In embedded mode it opens the layer cache but
// does not download the DB: the first scan (or EnsureDB) does, so that a
// command that never scans never touches the network.
func New(cfg config.Scanner, opts Options) (*Scanner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Registry == nil {
		return nil, errors.New("scanner: a registry client is required")
	}
	s := &Scanner{cfg: cfg, reg: opts.Registry, log: opts.Log, now: opts.Now, mode: ModeEmbedded}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	dir, err := cacheDir(cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	s.cacheDir = dir
	if cfg.Server != "" {
		s.mode = ModeServer
		s.serverHeader = http.Header{}
		if cfg.ServerTokenFile != "" {
			tok, err := readSecretFile(cfg.ServerTokenFile)
			if err != nil {
				return nil, fmt.Errorf("scanner.serverTokenFile: %w", err)
			}
			s.serverHeader.Set("Trivy-Token", tok)
		}
		return s, nil
	}

	activeMu.Lock()
	defer activeMu.Unlock()
	if active != nil {
		return nil, errors.New("scanner: an embedded scanner is already open in this process (Trivy's DB handle is process-wide): share it, or Close it first")
	}
	if err := os.MkdirAll(filepath.Join(dir, "fanal"), 0o700); err != nil {
		return nil, fmt.Errorf("scanner.cacheDir: %w", err)
	}
	c, closeCache, err := cache.New(cache.Options{Backend: "fs", CacheDir: dir})
	if err != nil {
		return nil, fmt.Errorf("scanner: layer cache in %s: %w", dir, err)
	}
	s.cache, s.closeCache = c, closeCache
	if len(cfg.JavaDBRepositories) > 0 {
		// The Java DB is fetched lazily, only when an image holds a Java
		// archive. References carry the plain-HTTP decision per host.
		var refs []name.Reference
		for _, r := range cfg.JavaDBRepositories {
			ref, err := s.reg.ParseReference(r)
			if err != nil {
				closeCache()
				return nil, fmt.Errorf("scanner.javaDbRepositories: %q: %w", r, err)
			}
			refs = append(refs, ref)
		}
		javadb.Init(dir, refs, false, true, ftypes.RegistryOptions{})
		s.javaDB = true
	}
	active = s
	return s, nil
}

// Close releases the DB handle and the layer cache.
func (s *Scanner) Close() error {
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.dbOpen {
		errs = append(errs, db.Close())
		s.dbOpen = false
	}
	if s.closeCache != nil {
		s.closeCache()
	}
	if s.mode == ModeEmbedded {
		activeMu.Lock()
		if active == s {
			active = nil
		}
		activeMu.Unlock()
	}
	return errors.Join(errs...)
}

// Mode is ModeEmbedded or ModeServer.
func (s *Scanner) Mode() string { return s.mode }

// DBStatus reports the DB in use (embedded mode), after EnsureDB.
func (s *Scanner) DBStatus() DBStatus {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	return s.status
}

// EnsureDB makes sure a fresh enough DB is open: it downloads one when
// there is none or the one in the cache is due for refresh
// (scanner.dbRefreshInterval since it was downloaded), and fails closed
// when no DB can be had or the one available was built longer ago than
// scanner.dbMaxAge. A failed refresh of a DB that is still within its
// maximum age is logged and the DB kept. Server mode: nothing to do.
func (s *Scanner) EnsureDB(ctx context.Context) error {
	if s.mode == ModeServer {
		return nil
	}
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	now := s.now()
	st, localErr := s.localDB()
	due := localErr != nil || !now.Before(st.DownloadedAt.Add(s.cfg.DBRefreshInterval))
	if due {
		repo, err := s.download(ctx)
		switch {
		case err == nil:
			s.log.Info("vulnerability DB downloaded", "repository", repo)
			st, localErr = s.localDB()
			if localErr != nil {
				return fmt.Errorf("%w: downloaded DB unreadable: %v", ErrDBUnavailable, localErr)
			}
		case localErr != nil:
			return err
		default:
			s.log.Warn("vulnerability DB refresh failed; keeping the cached DB", "error", err,
				"builtAt", st.UpdatedAt, "maxAge", s.cfg.DBMaxAge)
		}
	}
	if age := now.Sub(st.UpdatedAt); age > s.cfg.DBMaxAge {
		return fmt.Errorf("%w: the DB in %s was built %s ago (at %s), more than scanner.dbMaxAge (%s), and no newer one could be downloaded from %s; refresh the mirror or raise scanner.dbMaxAge",
			ErrDBStale, st.Dir, age.Round(time.Minute), st.UpdatedAt.UTC().Format(time.RFC3339), s.cfg.DBMaxAge,
			strings.Join(s.cfg.DBRepositories, ", "))
	}
	s.dbMu.RLock()
	same := s.dbOpen && s.status.Dir == st.Dir
	s.dbMu.RUnlock()
	if same {
		return nil
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.closed {
		return errors.New("scanner: closed")
	}
	if s.dbOpen {
		if err := db.Close(); err != nil {
			s.log.Warn("closing the previous vulnerability DB", "error", err)
		}
		s.dbOpen = false
	}
	if err := openDB(st.Dir); err != nil {
		return fmt.Errorf("%w: opening %s: %v", ErrDBUnavailable, st.Dir, err)
	}
	s.dbOpen = true
	s.status = st
	return nil
}

// RunRefresher keeps the DB fresh until ctx ends, checking every
// interval/4 so a due refresh happens soon after it is due. Long-running
// servers call it in a goroutine; one-shot commands rely on Scan's check.
func (s *Scanner) RunRefresher(ctx context.Context) {
	if s.mode == ModeServer {
		return
	}
	t := time.NewTicker(max(s.cfg.DBRefreshInterval/4, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.EnsureDB(ctx); err != nil {
				s.log.Error("vulnerability DB refresh", "error", err)
			}
		}
	}
}

// Result is one scan: Gantry's report, and Trivy's own report kept to
// render the SBOM from the same analysis.
type Result struct {
	Report *report.Report
	trivy  types.Report
}

// Scan reads the image at ref (a digest reference, or a tag that is
// resolved to its digest first) from its registry and returns the findings.
// Errors say whether the image or the DB was the problem.
func (s *Scanner) Scan(ctx context.Context, ref string) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.EnsureDB(ctx); err != nil {
		return nil, err
	}
	img, digestRef, err := s.fetchImage(ctx, ref)
	if err != nil {
		return nil, err
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.closed {
		return nil, errors.New("scanner: closed")
	}
	svc, err := s.service(ctx, img)
	if err != nil {
		return nil, err
	}
	tr, err := svc.ScanArtifact(ctx, scanOptions())
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("scan of %s: %w (scanner.timeout is %s)", digestRef, ctx.Err(), s.cfg.Timeout)
		}
		if s.mode == ModeServer {
			return nil, fmt.Errorf("scan of %s with the Trivy server %s (scanner.server): %w%s", digestRef, s.cfg.Server, err, serverHint(err))
		}
		return nil, fmt.Errorf("scan of %s: %w", digestRef, err)
	}
	// Trivy's own post-processing (duplicate removal, ordering), with no
	// filtering: every severity is kept and the gate decides.
	if err := result.Filter(ctx, tr, result.FilterOptions{Severities: allSeverities()}); err != nil {
		return nil, fmt.Errorf("scan of %s: %w", digestRef, err)
	}
	rep := convert(tr, digestRef)
	rep.ScannedAt = s.now().UTC()
	rep.Scanner = report.ScannerInfo{Name: "trivy", Version: TrivyVersion(), Mode: s.mode}
	if s.mode == ModeEmbedded {
		rep.DB = report.DBInfo{Repository: s.status.Repository, UpdatedAt: s.status.UpdatedAt.UTC(), DownloadedAt: s.status.DownloadedAt.UTC()}
	}
	return &Result{Report: rep, trivy: tr}, nil
}

// fetchImage resolves ref to a digest and returns the image handle; layers
// are fetched lazily, by digest, as Trivy reads them.
func (s *Scanner) fetchImage(ctx context.Context, ref string) (ftypes.Image, name.Digest, error) {
	r, err := s.reg.ParseReference(ref)
	if err != nil {
		return nil, name.Digest{}, fmt.Errorf("image %q: not a valid reference: %w", ref, err)
	}
	opts := s.reg.RemoteOptions(ctx)
	d, ok := r.(name.Digest)
	if !ok {
		desc, err := remote.Head(r, opts...)
		if err != nil {
			return nil, name.Digest{}, fmt.Errorf("image %s unreachable: %w", ref, err)
		}
		d = r.Context().Digest(desc.Digest.String())
	}
	img, err := remote.Image(d, opts...)
	if err != nil {
		return nil, name.Digest{}, fmt.Errorf("image %s unreachable: %w", d, err)
	}
	return &remoteImage{Image: img, ref: d}, d, nil
}

// service wires Trivy's scan service for one image.
func (s *Scanner) service(ctx context.Context, img ftypes.Image) (scan.Service, error) {
	disabled := slices.Concat(analyzer.TypeLockfiles, analyzer.TypeConfigFiles, []analyzer.Type{
		analyzer.TypeApkCommand, analyzer.TypeSecret, analyzer.TypeLicenseFile,
		analyzer.TypeHistoryDockerfile, analyzer.TypeExecutable, analyzer.TypeRpmArchive,
	})
	if !s.javaDB {
		disabled = append(disabled, analyzer.TypeJar)
	}
	opt := artifact.Option{
		DisabledAnalyzers: disabled,
		Parallel:          5,
		NoProgress:        true,
		// File digests make the SBOM's components match `trivy image
		// --format cyclonedx`.
		FileChecksum:      true,
		DetectionPriority: ftypes.PriorityPrecise,
		ImageOption:       ftypes.ImageOptions{ImageSources: ftypes.ImageSources{ftypes.RemoteImageSource}},
	}
	var ac cache.ArtifactCache = s.cache
	var backend scan.Backend
	if s.mode == ModeServer {
		ac = cache.NewRemoteCache(ctx, cache.RemoteOptions{ServerAddr: s.cfg.Server, CustomHeaders: s.serverHeader})
		backend = client.NewService(client.ServiceOption{RemoteURL: s.cfg.Server, CustomHeaders: s.serverHeader})
	} else {
		backend = local.NewService(applier.NewApplier(s.cache), ospkg.NewScanner(), langpkg.NewScanner(),
			vulnerability.NewClient(trivydb.Config{}))
	}
	art, err := artimage.NewArtifact(img, ac, opt)
	if err != nil {
		return scan.Service{}, fmt.Errorf("image analysis setup: %w", err)
	}
	return scan.NewService(backend, art), nil
}

// serverHint says what to fix when the Trivy server refused the request
// for a reason the operator controls.
func serverHint(err error) string {
	var twerr twirp.Error
	if errors.As(err, &twerr) && twerr.Code() == twirp.Unauthenticated {
		return "; the server refused the token: scanner.serverTokenFile must hold the server's --token"
	}
	return ""
}

func allSeverities() []dbTypes.Severity {
	out := make([]dbTypes.Severity, len(dbTypes.SeverityNames))
	for i := range dbTypes.SeverityNames {
		out[i] = dbTypes.Severity(i)
	}
	return out
}

func scanOptions() types.ScanOptions {
	return types.ScanOptions{
		PkgTypes:            []string{types.PkgTypeOS, types.PkgTypeLibrary},
		PkgRelationships:    ftypes.Relationships,
		Scanners:            types.Scanners{types.VulnerabilityScanner, types.SBOMScanner},
		VulnSeveritySources: []dbTypes.SourceID{"auto"},
	}
}

// remoteImage adapts a registry image to Trivy's image interface.
type remoteImage struct {
	v1.Image
	ref name.Digest
}

func (i *remoteImage) Name() string { return i.ref.String() }
func (i *remoteImage) ID() (string, error) {
	h, err := i.ConfigName()
	if err != nil {
		return "", err
	}
	return h.String(), nil
}
func (i *remoteImage) RepoTags() []string    { return nil }
func (i *remoteImage) RepoDigests() []string { return []string{i.ref.String()} }

// convert maps Trivy's report onto Gantry's schema.
func convert(tr types.Report, ref name.Digest) *report.Report {
	rep := &report.Report{Image: report.Image{Ref: ref.String(), Digest: ref.DigestStr(), ConfigDigest: tr.Metadata.ImageID}}
	if o := tr.Metadata.OS; o != nil && o.Family != "" {
		rep.Image.OS = &report.OS{Family: string(o.Family), Name: o.Name, EOSL: o.Eosl}
	}
	rep.Findings = []report.Finding{}
	for _, res := range tr.Results {
		rep.Packages += len(res.Packages)
		for _, v := range res.Vulnerabilities {
			target := res.Target
			if v.PkgPath != "" {
				target = v.PkgPath
			}
			// Trivy's FillInfo stores the severity it selected (vendor
			// first, then NVD) in this field; its own reports read it too.
			//lint:ignore SA1019 the selected severity, not the DB's legacy field
			severity := v.Severity
			f := report.Finding{
				ID: v.VulnerabilityID, Package: v.PkgName, PackageType: string(res.Type),
				InstalledVersion: v.InstalledVersion, FixedVersion: v.FixedVersion,
				Severity: cmp.Or(severity, "UNKNOWN"), Title: v.Title, URL: v.PrimaryURL,
				Target: target, Class: string(res.Class),
			}
			if v.Status != dbTypes.StatusUnknown {
				f.Status = v.Status.String()
			}
			if v.PkgIdentifier.PURL != nil {
				f.PURL = v.PkgIdentifier.PURL.String()
			}
			rep.Findings = append(rep.Findings, f)
		}
	}
	report.SortFindings(rep.Findings)
	return rep
}

// TrivyVersion is the Trivy module version linked into this binary.
func TrivyVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/aquasecurity/trivy" {
				return strings.TrimPrefix(m.Version, "v")
			}
		}
	}
	return "unknown"
}

func cacheDir(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("scanner.cacheDir is empty and there is no user cache directory (%v): set scanner.cacheDir", err)
	}
	return filepath.Join(base, "gantry", "trivy"), nil
}

// readSecretFile reads a small secret file, trimmed. Its content never
// appears in errors.
func readSecretFile(path string) (string, error) {
	b, err := files.ReadSecret(path, 4096)
	return string(b), err
}
