// Package repoconfig reads what a repository asks Gantry to build: its
// gantry.yaml, or, as an alternative, an OpenFaaS stack.yml whose functions
// use the dockerfile template.
//
// Everything here is untrusted input (it comes from a pushed commit): files
// are size-bounded, unknown keys are errors, paths must stay inside the
// repository, and no value can widen what the platform's own configuration
// allows (a repo may make the scan gate or lint threshold stricter, never
// looser: see Overrides).
package repoconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/files"
)

// File names looked up at the repository root, in this order.
const (
	GantryFile = "gantry.yaml"
	StackFile  = "stack.yml"
)

// MaxFileSize bounds a repository's config file.
const MaxFileSize = 256 << 10

// Repo is a repository's build configuration after validation.
type Repo struct {
	// Source is the file it was read from (gantry.yaml or stack.yml).
	Source    string
	Functions []Function
	Overrides Overrides
	// Templates and Copy are stack.yml's configuration.templates (pinned
	// template sources) and configuration.copy (paths copied into every
	// template function's build context).
	Templates []TemplateSource
	Copy      []string
}

// Function is one function to build, scan, sign and deploy.
type Function struct {
	// Name is a DNS-1123 label: it names the Deployment and Service.
	Name string `yaml:"name"`
	// Context is the build context directory, relative to the repo root.
	Context string `yaml:"context"`
	// Dockerfile is relative to Context.
	Dockerfile string `yaml:"dockerfile"`
	// Target is the Dockerfile stage to build; empty builds the last one.
	Target string `yaml:"target"`
	// BuildArgs are passed as --build-arg; never put secrets here.
	BuildArgs map[string]string `yaml:"buildArgs"`
	// Image is the repository to push to, without tag or digest.
	Image string `yaml:"image"`
	// Env is set on the function's container.
	Env map[string]string `yaml:"env"`
	// Secrets names Kubernetes Secrets in the function namespace that are
	// mounted as files; their values are never read by Gantry.
	Secrets []string `yaml:"secrets"`
	// Resources are the container's requests and limits.
	Resources Resources `yaml:"resources"`
	// Scale bounds the replica count.
	Scale Scale `yaml:"scale"`

	// Template is the OpenFaaS template (stack.yml lang) the function is
	// built from, empty for a Dockerfile function; Handler its handler
	// directory and BuildOptions the template's build_options it asks
	// for. Shrinkwrap lays out its build context and sets Context and
	// Dockerfile. Only stack.yml sets them.
	Template     string   `yaml:"-" json:"template,omitempty"`
	Handler      string   `yaml:"-" json:"handler,omitempty"`
	BuildOptions []string `yaml:"-" json:"buildOptions,omitempty"`
}

// Resources are Kubernetes quantities by resource name (cpu, memory).
type Resources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

// Scale bounds replicas; Min is what is deployed.
type Scale struct {
	Min int `yaml:"min"`
	Max int `yaml:"max"`
}

// Overrides are per-repository tightenings of the platform's gate and lint
// threshold. They are applied by the pipeline with the platform config as
// the floor.
type Overrides struct {
	Scan ScanOverrides `yaml:"scan"`
	Lint LintOverrides `yaml:"lint"`
	// Rollback "allow" lets a run deploy a commit that is not a
	// fast-forward of the deployed one (an older commit, or a rewritten
	// history); such a deploy is audited. Read from the configuration of
	// the deployed commit (what the repository says now), never from the
	// commit being deployed: a replayed old push cannot bring its own
	// permission. Default (empty or "refuse"): refused as stale.
	Rollback string `yaml:"rollback"`
}

// RollbackAllowed reports whether the configuration allows rollbacks.
func (o Overrides) RollbackAllowed() bool { return o.Rollback == "allow" }

// ScanOverrides tighten the scan gate for this repository.
type ScanOverrides struct {
	// Severities adds severities that fail the gate.
	Severities []string `yaml:"severities"`
	// IncludeUnfixable fails the gate also on findings with no fix.
	IncludeUnfixable bool `yaml:"includeUnfixable"`
	// IgnoreFile is a repo-relative ignore list (entries need id, reason and
	// expiry), checked by the scanner.
	IgnoreFile string `yaml:"ignoreFile"`
}

// LintOverrides tighten the lint threshold for this repository.
type LintOverrides struct {
	// FailOn is the lowest severity that fails lint.
	FailOn string `yaml:"failOn"`
}

// gantryFile is the on-disk shape of gantry.yaml.
type gantryFile struct {
	Version   int        `yaml:"version"`
	Functions []Function `yaml:"functions"`
	Overrides `yaml:",inline"`
}

// errNoFile is returned by readConfig when the repository has neither file.
var errNoFile = fmt.Errorf("no %s or %s at the repository root: nothing to build", GantryFile, StackFile)

// Load reads gantry.yaml, or else stack.yml, from the repository root dir.
func Load(root string) (*Repo, error) {
	r, err := readConfig(root)
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	if err := r.checkPaths(root); err != nil {
		return nil, err
	}
	return r, nil
}

// readConfig reads and parses the repository's config file with its
// defaults applied, not yet validated as a whole (see validate).
func readConfig(root string) (*Repo, error) {
	for _, f := range []string{GantryFile, StackFile} {
		b, err := readInRepo(root, f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if f == GantryFile {
			return parseGantry(b)
		}
		return parseStack(b)
	}
	return nil, errNoFile
}

// ParseGantry parses and validates gantry.yaml content.
func ParseGantry(b []byte) (*Repo, error) {
	r, err := parseGantry(b)
	if err != nil {
		return nil, err
	}
	return r, r.validate()
}

// parseGantry decodes gantry.yaml and applies its defaults.
func parseGantry(b []byte) (*Repo, error) {
	var f gantryFile
	if err := config.DecodeStrict(GantryFile, b, &f); err != nil {
		return nil, err
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%s: version must be 1, got %d", GantryFile, f.Version)
	}
	r := &Repo{Source: GantryFile, Functions: f.Functions, Overrides: f.Overrides}
	for i := range r.Functions {
		fn := &r.Functions[i]
		if fn.Context == "" {
			fn.Context = "."
		}
		if fn.Dockerfile == "" {
			fn.Dockerfile = "Dockerfile"
		}
		if fn.Scale.Min == 0 && fn.Scale.Max == 0 {
			fn.Scale = Scale{Min: 1, Max: 1}
		}
	}
	return r, nil
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// validate checks every function; all problems are reported at once.
func (r *Repo) validate() error {
	var errs []error
	if len(r.Functions) == 0 {
		errs = append(errs, fmt.Errorf("%s: no functions", r.Source))
	}
	if rb := r.Overrides.Rollback; rb != "" && rb != "allow" && rb != "refuse" {
		errs = append(errs, fmt.Errorf("%s: rollback %q: want allow or refuse", r.Source, rb))
	}
	seen := map[string]bool{}
	for i, fn := range r.Functions {
		where := fmt.Sprintf("%s: functions[%d]", r.Source, i)
		if fn.Name != "" {
			where = fmt.Sprintf("%s: function %q", r.Source, fn.Name)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		switch err := checkName(fn.Name); {
		case err != nil:
			bad("%v", err)
		case seen[fn.Name]:
			bad("name is used twice")
		}
		seen[fn.Name] = true
		for field, p := range map[string]string{"context": fn.Context, "dockerfile": fn.Dockerfile} {
			if err := relPathInside(p); err != nil {
				bad("%s %q: %v", field, p, err)
			}
		}
		if fn.Image == "" {
			bad("image is required (a repository such as registry.example.com/team/%s)", fn.Name)
		} else if err := checkImage(fn.Image); err != nil {
			bad("%v", err)
		}
		for k := range fn.Env {
			if !envName.MatchString(k) {
				bad("env %q is not a valid variable name", k)
			}
		}
		for k := range fn.BuildArgs {
			if !envName.MatchString(k) {
				bad("buildArgs %q is not a valid build-arg name", k)
			}
		}
		for _, s := range fn.Secrets {
			if len(s) > 253 || !dnsSubdomain(s) {
				bad("secret %q is not a valid Secret name", s)
			}
		}
		for kind, m := range map[string]map[string]string{"requests": fn.Resources.Requests, "limits": fn.Resources.Limits} {
			for res, q := range m {
				if res != "cpu" && res != "memory" && res != "ephemeral-storage" {
					bad("resources.%s: unknown resource %q (cpu, memory, ephemeral-storage)", kind, res)
				}
				if _, err := resource.ParseQuantity(q); err != nil {
					bad("resources.%s.%s: %q is not a quantity (e.g. 100m, 128Mi)", kind, res, q)
				}
			}
		}
		if fn.Scale.Min < 0 || fn.Scale.Max < fn.Scale.Min || fn.Scale.Max > 100 {
			bad("scale: want 0 <= min <= max <= 100, got min %d max %d", fn.Scale.Min, fn.Scale.Max)
		}
	}
	for _, s := range r.Overrides.Scan.Severities {
		if !contains([]string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}, s) {
			errs = append(errs, fmt.Errorf("%s: scan.severities: %q is not a severity (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN)", r.Source, s))
		}
	}
	if f := r.Overrides.Lint.FailOn; f != "" && !contains([]string{"error", "warning", "info"}, f) {
		errs = append(errs, fmt.Errorf("%s: lint.failOn: %q (allowed: error, warning, info)", r.Source, f))
	}
	if p := r.Overrides.Scan.IgnoreFile; p != "" {
		if err := relPathInside(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: scan.ignoreFile %q: %v", r.Source, p, err))
		}
	}
	return errors.Join(errs...)
}

// checkName accepts a function name: it names the Deployment and Service.
func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("name is required")
	case len(n) > 63 || !dnsLabel.MatchString(n):
		return errors.New("name must be a DNS label (lower case letters, digits, '-', at most 63)")
	}
	return nil
}

// checkImage accepts an image repository. Gantry pushes and deploys by
// digest: a tag or digest here would be ignored, so it is refused as a
// mistake.
func checkImage(image string) error {
	if _, err := name.NewRepository(image); err != nil {
		return fmt.Errorf("image %q must be a repository without tag or digest (Gantry pins the built digest): %v", image, err)
	}
	return nil
}

func dnsSubdomain(s string) bool {
	for _, part := range strings.Split(s, ".") {
		if !dnsLabel.MatchString(part) {
			return false
		}
	}
	return s != ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// relPathInside accepts a relative path that stays inside its base.
func relPathInside(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if filepath.IsAbs(p) {
		return errors.New("must be relative to the repository root")
	}
	if c := filepath.Clean(p); c == ".." || strings.HasPrefix(c, "../") {
		return errors.New("must stay inside the repository")
	}
	return nil
}

// checkPaths resolves symlinks: a context, Dockerfile or ignore file that
// is a link out of the checkout would let a commit read the build host's
// files (and show them back in the run's log).
func (r *Repo) checkPaths(root string) error {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	var errs []error
	inside := func(what, p string) {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", what, relTo(realRoot, p), errors.Unwrap(err)))
			return
		}
		if real != realRoot && !strings.HasPrefix(real, realRoot+string(filepath.Separator)) {
			errs = append(errs, fmt.Errorf("%s: %s points outside the repository", what, relTo(realRoot, p)))
		}
	}
	for _, fn := range r.Functions {
		ctxDir := filepath.Join(realRoot, fn.Context)
		inside(fmt.Sprintf("function %q", fn.Name), ctxDir)
		if fn.Template == "" { // a template function's Dockerfile is the template's
			inside(fmt.Sprintf("function %q", fn.Name), filepath.Join(ctxDir, fn.Dockerfile))
		}
	}
	for _, p := range r.Copy {
		inside("configuration.copy", filepath.Join(realRoot, p))
	}
	if f := r.Overrides.Scan.IgnoreFile; f != "" {
		inside("scan.ignoreFile", filepath.Join(realRoot, f))
	}
	return errors.Join(errs...)
}

func relTo(root, p string) string {
	if r, err := filepath.Rel(root, p); err == nil {
		return r
	}
	return p
}

// readInRepo reads a root-level file, bounded, refusing symlinks.
func readInRepo(root, file string) ([]byte, error) {
	p := filepath.Join(root, file)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s must be a regular file (not a link or directory)", file)
	}
	b, err := files.ReadBounded(p, MaxFileSize)
	if errors.Is(err, files.ErrTooLarge) {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, MaxFileSize)
	}
	return b, err
}

// Names returns the function names, sorted.
func (r *Repo) Names() []string {
	out := make([]string, 0, len(r.Functions))
	for _, f := range r.Functions {
		out = append(out, f.Name)
	}
	sort.Strings(out)
	return out
}
