// Package scantest builds what scanner tests (and the pipeline tests and the
// demo) need without the internet: a small Trivy vulnerability DB with
// made-up advisories, pushed to a registry as the OCI artifact Trivy
// expects, and images built with BuildKit whose package databases list the
// planted vulnerable packages (or only clean ones).
//
// The planted data:
//
//	CVE-2099-0001  openssl (debian 12)  HIGH      fixed in 3.0.99-1
//	CVE-2099-0002  openssl (debian 12)  CRITICAL  no fix
//	CVE-2099-0003  zlib    (debian 12)  MEDIUM    fixed in 1:1.3.1-1
//	GHSA-2099-gant-ry01 left-pad (npm)  HIGH      fixed in 1.3.0
//
// VulnerableFiles installs openssl 3.0.11-1~deb12u2, zlib1g 1:1.2.13.dfsg-1
// and left-pad 1.0.0: all four are found. CleanFiles installs only
// base-files: nothing is found. With the default gate (CRITICAL,HIGH with a
// fix) the vulnerable image fails on CVE-2099-0001 and GHSA-2099-gant-ry01,
// the clean image passes.
package scantest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/client/llb"
	bolt "go.etcd.io/bbolt"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	dbTypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy-db/pkg/vulnsrc/vulnerability"

	"github.com/gantry-dev/gantry/scanner"
)

// The planted vulnerabilities.
const (
	FixableHigh     = "CVE-2099-0001"
	UnfixedCritical = "CVE-2099-0002"
	FixableMedium   = "CVE-2099-0003"
	NPMHigh         = "GHSA-2099-gant-ry01"

	OpenSSLFixedVersion = "3.0.99-1"
)

// Media types of Trivy's DB artifact.
const (
	DBConfigMediaType = "application/vnd.aquasec.trivy.config.v1+json"
	DBLayerMediaType  = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
)

type advisory struct {
	bucket, pkg, id string
	adv             dbTypes.Advisory
	vuln            dbTypes.Vulnerability
}

var planted = []advisory{
	{"debian 12", "openssl", FixableHigh, dbTypes.Advisory{FixedVersion: OpenSSLFixedVersion},
		dbTypes.Vulnerability{Title: "openssl: planted fixable flaw (Gantry test data)", Description: "Made up for tests.",
			VendorSeverity: dbTypes.VendorSeverity{vulnerability.Debian: dbTypes.SeverityHigh, vulnerability.NVD: dbTypes.SeverityHigh},
			References:     []string{"https://example.invalid/" + FixableHigh}}},
	{"debian 12", "openssl", UnfixedCritical, dbTypes.Advisory{Status: dbTypes.StatusAffected},
		dbTypes.Vulnerability{Title: "openssl: planted unfixed flaw (Gantry test data)", Description: "Made up for tests.",
			VendorSeverity: dbTypes.VendorSeverity{vulnerability.Debian: dbTypes.SeverityCritical, vulnerability.NVD: dbTypes.SeverityCritical}}},
	{"debian 12", "zlib", FixableMedium, dbTypes.Advisory{FixedVersion: "1:1.3.1-1"},
		dbTypes.Vulnerability{Title: "zlib: planted medium flaw (Gantry test data)",
			VendorSeverity: dbTypes.VendorSeverity{vulnerability.Debian: dbTypes.SeverityMedium}}},
	{"npm::GitHub Security Advisory npm", "left-pad", NPMHigh,
		dbTypes.Advisory{VulnerableVersions: []string{"<1.3.0"}, PatchedVersions: []string{"1.3.0"}},
		dbTypes.Vulnerability{Title: "left-pad: planted npm flaw (Gantry test data)",
			VendorSeverity: dbTypes.VendorSeverity{vulnerability.GHSA: dbTypes.SeverityHigh}}},
}

var dataSources = map[string]dbTypes.DataSource{
	"debian 12": {ID: vulnerability.Debian, Name: "Debian Security Tracker", URL: "https://salsa.debian.org/security-tracker-team/security-tracker"},
	"npm::GitHub Security Advisory npm": {ID: vulnerability.GHSA, Name: "GitHub Security Advisory npm",
		URL: "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Anpm"},
}

// writeDBMu serialises WriteDB: trivy-db's handle is process-wide.
var writeDBMu sync.Mutex

// WriteDB writes trivy.db and metadata.json (schema version 2, built at
// updatedAt) into dir.
//
// trivy-db keeps its handle in a process-wide variable, shared with the
// scanner: WriteDB refuses to run while an embedded scanner is open in this
// process. Build the DB first (DBArchive caches nothing; call it once).
// Calls are serialised (writeDBMu), so parallel tests may each build one.
func WriteDB(dir string, updatedAt time.Time) error {
	writeDBMu.Lock()
	defer writeDBMu.Unlock()
	if scanner.EmbeddedOpen() {
		return errors.New("scantest: an embedded scanner is open in this process; build the test DB before opening it")
	}
	if err := trivydb.Init(dir); err != nil {
		return err
	}
	dbc := trivydb.Config{}
	err := dbc.BatchUpdate(func(tx *bolt.Tx) error {
		for bkt, ds := range dataSources {
			if err := dbc.PutDataSource(tx, bkt, ds); err != nil {
				return err
			}
		}
		for _, a := range planted {
			if err := dbc.PutAdvisory(tx, []string{a.bucket, a.pkg}, a.id, a.adv); err != nil {
				return err
			}
			if err := dbc.PutVulnerability(tx, a.id, a.vuln); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := trivydb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return metadata.NewClient(dir).Update(metadata.Metadata{
		Version: trivydb.SchemaVersion, UpdatedAt: updatedAt.UTC(), NextUpdate: updatedAt.UTC().Add(24 * time.Hour),
	})
}

// DBArchive returns db.tar.gz (trivy.db + metadata.json) built at updatedAt.
func DBArchive(updatedAt time.Time) ([]byte, error) {
	dir, err := os.MkdirTemp("", "gantry-trivydb-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := WriteDB(dir, updatedAt); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []string{"trivy.db", "metadata.json"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(b)), ModTime: updatedAt}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// PushDB pushes archive as Trivy's DB artifact to ref (e.g.
// 127.0.0.1:5000/x/trivy-db:2) and returns its digest.
func PushDB(ctx context.Context, ref string, archive []byte, opts ...name.Option) (string, error) {
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", err
	}
	layer := static.NewLayer(archive, DBLayerMediaType)
	img := mutate.MediaType(empty.Image, ggcrtypes.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, DBConfigMediaType)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer,
		Annotations: map[string]string{"org.opencontainers.image.title": "db.tar.gz"}})
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push DB to %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

const osRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
`

func dpkgEntry(pkg, source, version, desc string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 100\n", pkg)
	fmt.Fprintf(&b, "Maintainer: Gantry Tests <tests@example.invalid>\nArchitecture: amd64\n")
	if source != "" {
		fmt.Fprintf(&b, "Source: %s\n", source)
	}
	fmt.Fprintf(&b, "Version: %s\nDescription: %s\n\n", version, desc)
	return b.String()
}

// VulnerableFiles are the files of an image with the planted packages.
func VulnerableFiles() map[string]string {
	return map[string]string{
		"/etc/os-release":                             osRelease,
		"/etc/debian_version":                         "12.4\n",
		"/var/lib/dpkg/status":                        dpkgEntry("base-files", "", "12.4+deb12u4", "Debian base system") + dpkgEntry("openssl", "", "3.0.11-1~deb12u2", "TLS toolkit") + dpkgEntry("zlib1g", "zlib", "1:1.2.13.dfsg-1", "compression library"),
		"/usr/lib/node_modules/left-pad/package.json": `{"name": "left-pad", "version": "1.0.0", "license": "WTFPL"}` + "\n",
	}
}

// CleanFiles are the files of an image with no known vulnerability.
func CleanFiles() map[string]string {
	return map[string]string{
		"/etc/os-release":      osRelease,
		"/etc/debian_version":  "12.4\n",
		"/var/lib/dpkg/status": dpkgEntry("base-files", "", "12.4+deb12u4", "Debian base system"),
	}
}

// BuildImage builds an image FROM base with files added, with BuildKit at
// buildkitAddr, pushes it to ref (a repository on a plain-HTTP test
// registry) and returns repository@digest.
func BuildImage(ctx context.Context, buildkitAddr, base, ref string, files map[string]string) (string, error) {
	st := llb.Image(base)
	for _, p := range slices.Sorted(maps.Keys(files)) {
		st = st.File(llb.Mkdir(path.Dir(p), 0o755, llb.WithParents(true)).
			Mkfile(p, 0o644, []byte(files[p])))
	}
	def, err := st.Marshal(ctx, llb.LinuxAmd64)
	if err != nil {
		return "", err
	}
	c, err := bkclient.New(ctx, buildkitAddr)
	if err != nil {
		return "", fmt.Errorf("buildkit at %s: %w", buildkitAddr, err)
	}
	defer c.Close()
	resp, err := c.Solve(ctx, def, bkclient.SolveOpt{
		Exports: []bkclient.ExportEntry{{Type: bkclient.ExporterImage, Attrs: map[string]string{
			"name": ref, "push": "true", "registry.insecure": "true",
		}}},
	}, nil)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	dgst := resp.ExporterResponse["containerimage.digest"]
	if dgst == "" {
		return "", fmt.Errorf("build %s: BuildKit returned no digest", ref)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	return r.Context().Name() + "@" + dgst, nil
}

// Fixture is a pushed test DB and two pushed images.
type Fixture struct {
	// Registry is host:port of the plain-HTTP registry.
	Registry string
	// DBRepository is the DB artifact reference (…/trivy-db:2).
	DBRepository string
	// Vulnerable and Clean are repository@digest references.
	Vulnerable, Clean string
}

// Setup pushes the DB (built at dbUpdatedAt) and builds both images under a
// unique repository prefix, so parallel tests do not collide.
func Setup(ctx context.Context, buildkitAddr, registry, base string, dbUpdatedAt time.Time) (*Fixture, error) {
	prefix := registry + "/scantest-" + Unique()
	archive, err := DBArchive(dbUpdatedAt)
	if err != nil {
		return nil, fmt.Errorf("build test DB: %w", err)
	}
	f := &Fixture{Registry: registry, DBRepository: prefix + "/trivy-db:2"}
	if _, err := PushDB(ctx, f.DBRepository, archive, name.Insecure); err != nil {
		return nil, err
	}
	if f.Vulnerable, err = BuildImage(ctx, buildkitAddr, base, prefix+"/vulnerable:1", VulnerableFiles()); err != nil {
		return nil, err
	}
	if f.Clean, err = BuildImage(ctx, buildkitAddr, base, prefix+"/clean:1", CleanFiles()); err != nil {
		return nil, err
	}
	return f, nil
}

// Unique returns a short random name component.
func Unique() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// String prints the fixture as JSON (for the demo and test logs).
func (f *Fixture) String() string {
	b, _ := json.MarshalIndent(f, "", "  ")
	return string(b)
}
