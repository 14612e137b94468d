package repoconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gantry-dev/gantry/internal/files"
)

// BuildDir is where Shrinkwrap lays out the build contexts of template
// functions, inside the checkout (removed and written anew each time).
const BuildDir = ".gantry-build"

// Bounds of one template function's build context.
const (
	maxContextFiles = 20000
	maxContextBytes = 512 << 20
	maxTemplateYAML = 64 << 10
)

var (
	templateName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)
	commitSHA    = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// TemplateSource is one entry of stack.yml's configuration.templates: an
// OpenFaaS template repository (templates under template/NAME/) pinned to
// a commit: `source: https://github.com/owner/repo#<40-hex commit>`.
type TemplateSource struct {
	Name   string
	URL    string
	Commit string
}

// parseTemplateSources checks configuration.templates: each names a
// template and a source pinned to a full commit SHA.
func parseTemplateSources(entries []map[string]string) ([]TemplateSource, error) {
	var out []TemplateSource
	var errs []error
	for i, e := range entries {
		where := fmt.Sprintf("%s: configuration.templates[%d]", StackFile, i)
		for k := range e {
			if k != "name" && k != "source" {
				errs = append(errs, fmt.Errorf("%s: unknown key %q (name, source)", where, k))
			}
		}
		n, src := e["name"], e["source"]
		if !templateName.MatchString(n) {
			errs = append(errs, fmt.Errorf("%s: name %q is not a template name", where, n))
			continue
		}
		u, ref, _ := strings.Cut(src, "#")
		if u == "" {
			errs = append(errs, fmt.Errorf("%s (%s): source is required", where, n))
			continue
		}
		if !commitSHA.MatchString(ref) {
			errs = append(errs, fmt.Errorf("%s (%s): source %q is not pinned to a commit: write it as %s#<the 40-hex commit SHA> (a branch or tag can move under a signed build)", where, n, src, u))
			continue
		}
		out = append(out, TemplateSource{Name: n, URL: u, Commit: ref})
	}
	return out, errors.Join(errs...)
}

// TemplateOptions say where templates may come from and how to fetch one.
type TemplateOptions struct {
	// Hosts are the hosts configuration.templates sources may name
	// (https only), e.g. github.com.
	Hosts []string
	// AllowLocal also allows local paths and file:// URLs (tests, demo).
	AllowLocal bool
	// WorkDir holds fetched template repositories (outside the checkout).
	WorkDir string
	// Fetch checks out commit of url into dir, without credentials.
	Fetch func(ctx context.Context, url, commit, dir string) error
}

// templateFile is the part of an OpenFaaS template.yml Gantry reads.
type templateFile struct {
	Language      string        `yaml:"language"`
	HandlerFolder string        `yaml:"handler_folder"`
	BuildOptions  []buildOption `yaml:"build_options"`
}

// buildOption is a named set of packages a function may ask for.
type buildOption struct {
	Name     string   `yaml:"name"`
	Packages []string `yaml:"packages"`
}

// Shrinkwrap lays out the build context of every template function of r
// as `faas-cli build --shrinkwrap` does — the template directory, the
// handler's files merged into its function/ folder (template.yml's
// handler_folder), configuration.copy paths at the top — under
// root/BuildDir/NAME, and points the function there. build_options become
// the ADDITIONAL_PACKAGE build argument from the template's options. A
// template comes from the repository's own template/LANG/, else from
// configuration.templates (fetched at its pinned commit from an allowed
// host, without credentials). Nothing is read or written outside root
// and opts.WorkDir: links are copied as links, never followed.
func Shrinkwrap(ctx context.Context, root string, r *Repo, opts TemplateOptions) error {
	var tmpl []*Function
	for i := range r.Functions {
		if r.Functions[i].Template != "" {
			tmpl = append(tmpl, &r.Functions[i])
		}
	}
	if len(tmpl) == 0 {
		return nil
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(realRoot, BuildDir)); err != nil {
		return err
	}
	fetched := map[string]string{} // source URL#commit → checkout
	var errs []error
	for _, fn := range tmpl {
		if err := shrinkwrapOne(ctx, realRoot, r, fn, opts, fetched); err != nil {
			errs = append(errs, fmt.Errorf("function %q (template %s): %w", fn.Name, fn.Template, err))
		}
	}
	return errors.Join(errs...)
}

func shrinkwrapOne(ctx context.Context, root string, r *Repo, fn *Function, opts TemplateOptions, fetched map[string]string) error {
	dir, err := findTemplate(ctx, root, r, fn.Template, opts, fetched)
	if err != nil {
		return err
	}
	raw, err := files.ReadBounded(filepath.Join(dir, "template.yml"), maxTemplateYAML)
	if err != nil {
		return fmt.Errorf("not an OpenFaaS template (template.yml: %v)", err)
	}
	var tf templateFile
	if err := yaml.Unmarshal(raw, &tf); err != nil {
		return fmt.Errorf("template.yml: %v", err)
	}
	handlerFolder := "function"
	if tf.HandlerFolder != "" {
		if err := relPathInside(tf.HandlerFolder); err != nil {
			return fmt.Errorf("template.yml handler_folder %q: %v", tf.HandlerFolder, err)
		}
		handlerFolder = filepath.Clean(tf.HandlerFolder)
	}
	var pkgs []string
	for _, o := range fn.BuildOptions {
		i := slices.IndexFunc(tf.BuildOptions, func(b buildOption) bool { return b.Name == o })
		if i < 0 {
			var names []string
			for _, b := range tf.BuildOptions {
				names = append(names, b.Name)
			}
			return fmt.Errorf("build_options %q: the template offers %q", o, names)
		}
		pkgs = append(pkgs, tf.BuildOptions[i].Packages...)
	}

	rel := path.Join(BuildDir, fn.Name)
	out := filepath.Join(root, filepath.FromSlash(rel))
	c := &copier{base: out}
	if err := c.tree(dir, out); err != nil {
		return fmt.Errorf("copying the template: %w", err)
	}
	handler, err := insideRoot(root, fn.Handler)
	if err != nil {
		return fmt.Errorf("handler %q: %w", fn.Handler, err)
	}
	fdir := filepath.Join(out, handlerFolder)
	if err := c.mkdir(fdir); err != nil {
		return err
	}
	entries, err := os.ReadDir(handler)
	if err != nil {
		return fmt.Errorf("handler %q: %w", fn.Handler, err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "build", "template", BuildDir, ".git":
			continue // as faas-cli: never the build output or the templates (nor git's own files)
		}
		if err := c.tree(filepath.Join(handler, e.Name()), filepath.Join(fdir, e.Name())); err != nil {
			return fmt.Errorf("copying the handler: %w", err)
		}
	}
	for _, p := range r.Copy {
		src, err := insideRoot(root, p)
		if err != nil {
			return fmt.Errorf("configuration.copy %q: %w", p, err)
		}
		if err := c.tree(src, filepath.Join(out, filepath.FromSlash(path.Clean(p)))); err != nil {
			return fmt.Errorf("configuration.copy %q: %w", p, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(out, "Dockerfile")); err != nil || !fi.Mode().IsRegular() {
		return errors.New("the template has no Dockerfile")
	}
	fn.Context, fn.Dockerfile = rel, "Dockerfile"
	if len(pkgs) > 0 {
		if fn.BuildArgs == nil {
			fn.BuildArgs = map[string]string{}
		}
		all := strings.Join(pkgs, " ")
		if extra := fn.BuildArgs["ADDITIONAL_PACKAGE"]; extra != "" {
			all += " " + extra
		}
		fn.BuildArgs["ADDITIONAL_PACKAGE"] = all
	}
	return nil
}

// findTemplate returns the directory of template lang: the repository's
// template/LANG, else the pinned source configuration.templates names.
func findTemplate(ctx context.Context, root string, r *Repo, lang string, opts TemplateOptions, fetched map[string]string) (string, error) {
	local := filepath.Join(root, "template", lang)
	if _, err := os.Lstat(local); err == nil {
		real, err := insideRoot(root, path.Join("template", lang))
		if err != nil {
			return "", fmt.Errorf("template/%s: %w", lang, err)
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("template/%s is not a directory", lang)
		}
		return real, nil
	}
	i := slices.IndexFunc(r.Templates, func(t TemplateSource) bool { return t.Name == lang })
	if i < 0 {
		return "", fmt.Errorf("no template %q: commit it under template/%s/ (faas-cli template pull) or name it in %s configuration.templates with a source pinned to a commit (https://HOST/OWNER/REPO#<commit SHA>)",
			lang, lang, StackFile)
	}
	ts := r.Templates[i]
	key := ts.URL + "#" + ts.Commit
	repo, ok := fetched[key]
	if !ok {
		if err := checkTemplateURL(ts.URL, opts); err != nil {
			return "", err
		}
		if opts.Fetch == nil || opts.WorkDir == "" {
			return "", errors.New("templates cannot be fetched here")
		}
		repo = filepath.Join(opts.WorkDir, "template-"+ts.Commit)
		if err := os.RemoveAll(repo); err != nil {
			return "", err
		}
		if err := opts.Fetch(ctx, ts.URL, ts.Commit, repo); err != nil {
			return "", fmt.Errorf("fetching %s at %s: %w", ts.URL, ts.Commit, err)
		}
		fetched[key] = repo
	}
	real, err := insideRoot(repo, path.Join("template", lang))
	if err != nil {
		return "", fmt.Errorf("%s at %s: template/%s: %w", ts.URL, ts.Commit[:12], lang, err)
	}
	return real, nil
}

// checkTemplateURL allows https URLs on the configured hosts (and local
// sources when allowed).
func checkTemplateURL(raw string, opts TemplateOptions) error {
	u, err := url.Parse(raw)
	if err == nil && u.Scheme == "https" && u.User == nil {
		for _, h := range opts.Hosts {
			if strings.EqualFold(u.Host, h) {
				return nil
			}
		}
		return fmt.Errorf("template source %s: host %q is not in pipeline.templateHosts %q", raw, u.Host, opts.Hosts)
	}
	if opts.AllowLocal && (filepath.IsAbs(raw) || (err == nil && u.Scheme == "file")) {
		return nil
	}
	return fmt.Errorf("template source %q: want https://HOST/OWNER/REPO on one of pipeline.templateHosts %q", raw, opts.Hosts)
}

// insideRoot resolves rel under root and refuses a result outside it.
func insideRoot(root, rel string) (string, error) {
	if err := relPathInside(rel); err != nil {
		return "", err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(filepath.Join(realRoot, filepath.FromSlash(rel)))
	if err != nil {
		return "", err
	}
	if real != realRoot && !strings.HasPrefix(real, realRoot+string(filepath.Separator)) {
		return "", errors.New("points outside the repository")
	}
	return real, nil
}

// copier copies trees into base without following links, within bounds.
type copier struct {
	base  string
	files int
	bytes int64
}

// checkTarget refuses a target whose path below base passes through a
// link (one the template itself brought): writing there would land
// wherever the link points.
func (c *copier) checkTarget(target string) error {
	rel, err := filepath.Rel(c.base, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s is outside the build context", target)
	}
	p := c.base
	parts := strings.Split(rel, string(filepath.Separator))
	for _, part := range parts[:len(parts)-1] {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s: a link in the template is in the way", filepath.Join(parts...))
		}
	}
	return nil
}

// mkdir creates dir (and its parents) below base, refusing links.
func (c *copier) mkdir(dir string) error {
	if err := c.checkTarget(dir); err != nil {
		return err
	}
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%s: a link in the template is in the way", dir)
	}
	return os.MkdirAll(dir, 0o755)
}

// tree copies src (a file, link or directory) to dst, merging into an
// existing directory and replacing existing files.
func (c *copier) tree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if err := c.checkTarget(target); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		c.files++
		if c.files > maxContextFiles {
			return fmt.Errorf("more than %d files", maxContextFiles)
		}
		switch {
		case d.IsDir():
			return c.mkdir(target)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_ = os.Remove(target)
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			c.bytes += info.Size()
			if c.bytes > maxContextBytes {
				return fmt.Errorf("more than %d bytes", maxContextBytes)
			}
			return copyFile(p, target, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: not a file, directory or link", rel)
		}
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_ = os.Remove(dst) // a link left by the template must not be written through
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
