package repoconfig

import (
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/gantry-dev/gantry/config"
)

// stackFile is the part of OpenFaaS's stack.yml (faas-cli) that Gantry
// reads. Keys faas-cli knows but Gantry cannot honour are listed so that a
// file using them gets a clear "not supported" rather than "unknown key".
type stackFile struct {
	Version       string                   `yaml:"version"`
	Provider      stackProvider            `yaml:"provider"`
	Functions     map[string]stackFunction `yaml:"functions"`
	Configuration stackConfiguration       `yaml:"configuration"`
}

type stackProvider struct {
	Name    string `yaml:"name"`
	Gateway string `yaml:"gateway"`
	Network string `yaml:"network"`
}

// stackConfiguration is faas-cli's template pulling (templates: name and
// a source, which Gantry requires pinned to a commit) and copy (paths
// copied into each template function's build context).
type stackConfiguration struct {
	Templates []map[string]string `yaml:"templates"`
	Copy      []string            `yaml:"copy"`
}

type stackFunction struct {
	Lang        string             `yaml:"lang"`
	Handler     string             `yaml:"handler"`
	Image       string             `yaml:"image"`
	Environment map[string]string  `yaml:"environment"`
	Secrets     []string           `yaml:"secrets"`
	Labels      map[string]string  `yaml:"labels"`
	Annotations map[string]string  `yaml:"annotations"`
	Limits      *stackResources    `yaml:"limits"`
	Requests    *stackResources    `yaml:"requests"`
	BuildArgs   map[string]string  `yaml:"build_args"`
	BuildOpts   []string           `yaml:"build_options"`
	ReadOnlyFS  *bool              `yaml:"readonly_root_filesystem"`
	Platforms   string             `yaml:"platforms"`
	Unsupported stackUnsupportedFn `yaml:",inline"`
}

// stackUnsupportedFn are faas-cli keys whose meaning Gantry cannot keep.
type stackUnsupportedFn struct {
	FProcess        string            `yaml:"fprocess"`
	EnvironmentFile []string          `yaml:"environment_file"`
	Constraints     []string          `yaml:"constraints"`
	Namespace       string            `yaml:"namespace"`
	BuildSecrets    map[string]string `yaml:"build_secrets"`
	SkipBuild       bool              `yaml:"skip_build"`
}

type stackResources struct {
	Memory string `yaml:"memory"`
	CPU    string `yaml:"cpu"`
}

// OpenFaaS scaling labels.
const (
	labelScaleMin = "com.openfaas.scale.min"
	labelScaleMax = "com.openfaas.scale.max"
)

// ParseStack parses an OpenFaaS stack.yml: `lang: dockerfile` functions
// build their handler directory's Dockerfile; any other lang is an
// OpenFaaS template, laid out by Shrinkwrap before the build.
func ParseStack(b []byte) (*Repo, error) {
	r, err := parseStack(b)
	if err != nil {
		return nil, err
	}
	return r, r.validate()
}

// parseStack decodes stack.yml into functions, refusing what Gantry cannot
// honour; the functions are not yet validated (see validate).
func parseStack(b []byte) (*Repo, error) {
	var f stackFile
	if err := config.DecodeStrict(StackFile, b, &f); err != nil {
		return nil, err
	}
	if f.Version != "" && f.Version != "1.0" {
		return nil, fmt.Errorf("%s: version %q: only 1.0 is supported", StackFile, f.Version)
	}
	if f.Provider.Name != "" && f.Provider.Name != "openfaas" {
		return nil, fmt.Errorf("%s: provider.name %q: only openfaas is supported", StackFile, f.Provider.Name)
	}
	names := make([]string, 0, len(f.Functions))
	for n := range f.Functions {
		names = append(names, n)
	}
	sort.Strings(names)
	r := &Repo{Source: StackFile}
	var errs []error
	ts, err := parseTemplateSources(f.Configuration.Templates)
	if err != nil {
		errs = append(errs, err)
	}
	r.Templates = ts
	for _, p := range f.Configuration.Copy {
		if err := relPathInside(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: configuration.copy %q: %v", StackFile, p, err))
		}
	}
	r.Copy = f.Configuration.Copy
	for _, n := range names {
		sf := f.Functions[n]
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: function %q: %s", StackFile, n, fmt.Sprintf(format, args...)))
		}
		switch {
		case sf.Lang == "":
			bad("lang is required (dockerfile, or an OpenFaaS template's name)")
			continue
		case sf.Lang != "dockerfile" && !templateName.MatchString(sf.Lang):
			bad("lang %q is not a template name", sf.Lang)
			continue
		case sf.Lang != "dockerfile" && sf.Handler == "":
			bad("handler is required for template %q (the directory with the function's code)", sf.Lang)
			continue
		case sf.Lang == "dockerfile" && len(sf.BuildOpts) > 0:
			bad("build_options are a template's (template.yml); a dockerfile function takes build_args")
		}
		u := sf.Unsupported
		for key, used := range map[string]bool{
			"fprocess":         u.FProcess != "",
			"environment_file": len(u.EnvironmentFile) > 0, "constraints": len(u.Constraints) > 0,
			"build_secrets": len(u.BuildSecrets) > 0, "skip_build": u.SkipBuild,
		} {
			if used {
				bad("%s is not supported by Gantry", key)
			}
		}
		if u.Namespace != "" {
			bad("namespace is set by the platform's Gantry configuration, not by the repository")
		}
		if sf.ReadOnlyFS != nil && !*sf.ReadOnlyFS {
			bad("readonly_root_filesystem: false is not allowed: Gantry always runs functions with a read-only root filesystem")
		}
		if sf.Platforms != "" && sf.Platforms != "linux/amd64" {
			bad("platforms %q: only linux/amd64 builds are supported", sf.Platforms)
		}
		fn := Function{
			Name: n, Context: sf.Handler, Dockerfile: "Dockerfile",
			BuildArgs: sf.BuildArgs, Env: sf.Environment, Secrets: sf.Secrets,
			Scale: Scale{Min: 1, Max: 1},
		}
		if sf.Lang != "dockerfile" {
			fn.Template, fn.Handler, fn.BuildOptions = sf.Lang, sf.Handler, sf.BuildOpts
		}
		if fn.Context == "" {
			fn.Context = "."
		}
		// stack.yml images conventionally carry a tag (":latest"); Gantry
		// pushes by digest, so only the repository is kept.
		if sf.Image != "" {
			ref, err := name.ParseReference(sf.Image)
			switch {
			case err != nil:
				bad("image %q: %v", sf.Image, err)
			case isDigest(ref):
				bad("image %q: a digest cannot be a build target; give a repository", sf.Image)
			default:
				fn.Image = ref.Context().String()
			}
		}
		if sf.Requests != nil {
			fn.Resources.Requests = sf.Requests.toMap()
		}
		if sf.Limits != nil {
			fn.Resources.Limits = sf.Limits.toMap()
		}
		for label, dst := range map[string]*int{labelScaleMin: &fn.Scale.Min, labelScaleMax: &fn.Scale.Max} {
			if v, ok := sf.Labels[label]; ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					bad("label %s: %q is not a number", label, v)
				}
				*dst = n
			}
		}
		if fn.Scale.Max < fn.Scale.Min {
			fn.Scale.Max = fn.Scale.Min
		}
		r.Functions = append(r.Functions, fn)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func isDigest(ref name.Reference) bool {
	_, ok := ref.(name.Digest)
	return ok
}

func (s *stackResources) toMap() map[string]string {
	m := map[string]string{}
	if s.CPU != "" {
		m["cpu"] = s.CPU
	}
	if s.Memory != "" {
		m["memory"] = s.Memory
	}
	return m
}
