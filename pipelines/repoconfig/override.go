package repoconfig

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Override is what `gantry run --function/--context/--dockerfile/--image`
// (and the reusable workflow's inputs behind them) ask of a repository's
// build configuration. It is given by the person running the command, not
// by the pushed commit, but it is validated with the same checks as the
// file, so it cannot build from outside the repository either.
//
//   - A repository without gantry.yaml or stack.yml: the flags describe its
//     one function (Image is then required; Context defaults to ".",
//     Dockerfile to "Dockerfile", Function to the image's last path
//     element).
//   - A repository whose file has exactly one function: each flag given
//     replaces that function's field (Function, when given, must be its
//     name: it guards against building the wrong repository).
//   - A repository with several functions: an error naming them; each
//     function's image and Dockerfile belong in the file.
type Override struct {
	// Function is the function's name (a DNS label).
	Function string
	// Context is the build context, relative to the repository root.
	Context string
	// Dockerfile is relative to Context.
	Dockerfile string
	// Image is the repository to push to, without tag or digest.
	Image string
}

// ErrOverride marks an Override that does not fit the repository (several
// functions, another function's name): a mistake in the command line, not
// in the commit.
var ErrOverride = errors.New("gantry run --function/--context/--dockerfile/--image")

// IsZero reports whether no field is set.
func (o Override) IsZero() bool { return o == Override{} }

// Validate checks each field given, with the checks the file's fields get.
func (o Override) Validate() error {
	var errs []error
	if o.Function != "" {
		if err := checkName(o.Function); err != nil {
			errs = append(errs, fmt.Errorf("--function %q: %v", o.Function, err))
		}
	}
	for flag, p := range map[string]string{"--context": o.Context, "--dockerfile": o.Dockerfile} {
		if p == "" {
			continue
		}
		if err := relPathInside(p); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", flag, p, err))
		}
	}
	if o.Image != "" {
		if err := checkImage(o.Image); err != nil {
			errs = append(errs, fmt.Errorf("--image: %v", err))
		}
	}
	return errors.Join(errs...)
}

// sourceName names where the functions came from, in messages and the run
// record.
func (o Override) sourceName(file string) string {
	if file == "" {
		return "gantry run flags"
	}
	return file + " with gantry run flags"
}

// LoadWith reads the repository's configuration like Load, with o applied
// (see Override). A zero o is Load.
func LoadWith(root string, o Override) (*Repo, error) {
	if o.IsZero() {
		return Load(root)
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOverride, err)
	}
	r, err := readConfig(root)
	switch {
	case errors.Is(err, errNoFile):
		if o.Image == "" {
			return nil, fmt.Errorf("%w: no %s or %s at the repository root: give --image REPO (with --dockerfile and --context when they are not ./Dockerfile) to build its one function",
				ErrOverride, GantryFile, StackFile)
		}
		fn := Function{Name: o.Function, Context: cmpOr(o.Context, "."), Dockerfile: cmpOr(o.Dockerfile, "Dockerfile"),
			Image: o.Image, Scale: Scale{Min: 1, Max: 1}}
		if fn.Name == "" {
			if fn.Name, err = nameFromImage(o.Image); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrOverride, err)
			}
		}
		r = &Repo{Source: o.sourceName(""), Functions: []Function{fn}}
	case err != nil:
		return nil, err
	default:
		if len(r.Functions) != 1 {
			return nil, fmt.Errorf("%w: apply to a repository with one function; %s has %d (%s): set each function's image, context and dockerfile in %s instead",
				ErrOverride, r.Source, len(r.Functions), strings.Join(r.Names(), ", "), r.Source)
		}
		fn := &r.Functions[0]
		if o.Function != "" && o.Function != fn.Name {
			return nil, fmt.Errorf("%w: --function %q, but %s's function is %q", ErrOverride, o.Function, r.Source, fn.Name)
		}
		fn.Context = cmpOr(o.Context, fn.Context)
		fn.Dockerfile = cmpOr(o.Dockerfile, fn.Dockerfile)
		fn.Image = cmpOr(o.Image, fn.Image)
		r.Source = o.sourceName(r.Source)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	if err := r.checkPaths(root); err != nil {
		return nil, err
	}
	return r, nil
}

// nameFromImage derives a function name from the image repository's last
// path element (ghcr.io/acme/hello-world → hello-world).
func nameFromImage(image string) (string, error) {
	n := strings.Trim(strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(path.Base(image))), "-")
	if checkName(n) != nil {
		return "", fmt.Errorf("no function name can be made from --image %q: give --function NAME", image)
	}
	return n, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
