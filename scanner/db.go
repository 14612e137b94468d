package scanner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	"github.com/aquasecurity/trivy/pkg/db"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	trivyoci "github.com/aquasecurity/trivy/pkg/oci"
)

// The DB lives in versioned directories under <cacheDir>/vulndb, and the
// symlink "current" names the one in use. A refresh downloads into a new
// directory and swaps the symlink with one rename, so a scan in another
// process never sees a half-written DB and two processes refreshing at once
// cannot corrupt each other.
const (
	dbRoot        = "vulndb"
	currentLink   = "current"
	sourceFile    = "gantry-source"
	dbDirPrefix   = "db-"
	keepOldDBDirs = 2
)

// DBStatus describes the DB a scanner uses.
type DBStatus struct {
	// Dir holds trivy.db and metadata.json.
	Dir string
	// Repository is where it was downloaded from.
	Repository string
	// UpdatedAt is when the DB was built; DownloadedAt when it was fetched.
	UpdatedAt, DownloadedAt time.Time
}

// ErrDBUnavailable wraps every failure to obtain a usable DB: a scan without
// one fails closed rather than passing on an empty DB.
var ErrDBUnavailable = errors.New("vulnerability DB unavailable")

// ErrDBStale is returned when the DB is older than scanner.dbMaxAge.
var ErrDBStale = errors.New("vulnerability DB is stale")

// localDB reads the DB the "current" symlink points at.
func (s *Scanner) localDB() (DBStatus, error) {
	root := filepath.Join(s.cacheDir, dbRoot)
	target, err := os.Readlink(filepath.Join(root, currentLink))
	if err != nil {
		return DBStatus{}, err
	}
	if filepath.Base(target) != target || !strings.HasPrefix(target, dbDirPrefix) {
		return DBStatus{}, fmt.Errorf("%s/%s points at %q, not a DB directory", root, currentLink, target)
	}
	dir := filepath.Join(root, target)
	meta, err := metadata.NewClient(dir).Get()
	if err != nil {
		return DBStatus{}, err
	}
	if meta.Version != trivydb.SchemaVersion {
		return DBStatus{}, fmt.Errorf("DB schema version %d, this Trivy needs %d", meta.Version, trivydb.SchemaVersion)
	}
	if _, err := os.Stat(trivydb.Path(dir)); err != nil {
		return DBStatus{}, err
	}
	src, _ := os.ReadFile(filepath.Join(dir, sourceFile))
	return DBStatus{Dir: dir, Repository: strings.TrimSpace(string(src)), UpdatedAt: meta.UpdatedAt, DownloadedAt: meta.DownloadedAt}, nil
}

// download fetches the DB from the first configured repository that
// answers, into a new directory, and makes it current. It returns the
// repository used.
func (s *Scanner) download(ctx context.Context) (string, error) {
	root := filepath.Join(s.cacheDir, dbRoot)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("%w: cache dir: %v", ErrDBUnavailable, err)
	}
	var errs []error
	for _, repo := range s.cfg.DBRepositories {
		dir, err := s.downloadFrom(ctx, root, repo)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", repo, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if err := swapCurrent(root, filepath.Base(dir)); err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("%w: %v", ErrDBUnavailable, err)
		}
		pruneOld(root, filepath.Base(dir))
		return repo, nil
	}
	return "", fmt.Errorf("%w: could not download it from any of scanner.dbRepositories (check the repository names, registry.insecure for plain-HTTP mirrors, and registry credentials): %w",
		ErrDBUnavailable, errors.Join(errs...))
}

func (s *Scanner) downloadFrom(ctx context.Context, root, repo string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ref, err := s.reg.ParseReference(repo)
	if err != nil {
		return "", fmt.Errorf("not an OCI reference: %w", err)
	}
	// Our registry client decides plain HTTP per host, credentials and
	// timeouts; Trivy only unpacks the artifact we hand it.
	img, err := remote.Image(ref, s.reg.RemoteOptions(ctx)...)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(root, dbDirPrefix+time.Now().UTC().Format("20060102T150405")+"-")
	if err != nil {
		return "", err
	}
	art := trivyoci.NewArtifact(repo, ftypes.RegistryOptions{}, trivyoci.WithImage(img))
	client := db.NewClient(dir, true, db.WithOCIArtifact(art))
	if err := client.Download(ctx, dir, ftypes.RegistryOptions{}); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	meta, err := metadata.NewClient(dir).Get()
	if err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("artifact has no valid metadata.json: %w", err)
	}
	if meta.Version != trivydb.SchemaVersion {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("DB schema version %d, this Trivy needs %d (point scanner.dbRepositories at a :%d tag)",
			meta.Version, trivydb.SchemaVersion, trivydb.SchemaVersion)
	}
	if fi, err := os.Stat(trivydb.Path(dir)); err != nil || fi.Size() == 0 {
		_ = os.RemoveAll(dir)
		return "", errors.New("artifact has no trivy.db")
	}
	if err := os.WriteFile(filepath.Join(dir, sourceFile), []byte(repo+"\n"), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// swapCurrent points the current symlink at dir atomically.
func swapCurrent(root, dir string) error {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(root, ".current-"+hex.EncodeToString(rnd[:]))
	if err := os.Symlink(dir, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(root, currentLink)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// pruneOld removes all but the newest few old DB directories. A process
// that still has an old one open keeps reading it: on Unix an open file
// outlives its directory entry.
func pruneOld(root, keep string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	var old []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), dbDirPrefix) && e.Name() != keep {
			old = append(old, e.Name())
		}
	}
	// Names start with a UTC timestamp: lexical order is age order.
	for i := 0; i < len(old)-keepOldDBDirs; i++ {
		_ = os.RemoveAll(filepath.Join(root, old[i]))
	}
}

// openDB opens dir as the process-wide Trivy DB (read-only).
func openDB(dir string) error {
	return db.Init(dir)
}
