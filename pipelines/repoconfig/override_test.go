package repoconfig

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadWith(t *testing.T) {
	oneFn := "version: 1\nfunctions:\n  - name: hello\n    context: fn\n    image: r.example/team/hello\n    env: {A: b}\n"
	twoFns := oneFn + "  - name: bye\n    context: fn\n    image: r.example/team/bye\n"
	noImage := "version: 1\nfunctions:\n  - name: hello\n    context: fn\n"
	stack := "version: 1.0\nfunctions:\n  hi:\n    lang: dockerfile\n    handler: ./fn\n    image: r.example/hi:latest\n"
	df := "FROM scratch\n"
	cases := []struct {
		name  string
		files map[string]string
		o     Override
		want  Function // checked fields: Name, Context, Dockerfile, Image
		src   string
		err   string // substring; "" means success
		isOvr bool   // the error is ErrOverride (a command-line mistake)
	}{
		{name: "no file: upper-case image refused", files: map[string]string{"Dockerfile": df},
			o: Override{Image: "ghcr.io/acme/Hello_World"}, err: "must be a repository", isOvr: true},
		{name: "no file: name from the image", files: map[string]string{"Dockerfile": df},
			o:    Override{Image: "ghcr.io/acme/hello.world"},
			want: Function{Name: "hello-world", Context: ".", Dockerfile: "Dockerfile", Image: "ghcr.io/acme/hello.world"}, src: "gantry run flags"},
		{name: "no file: context, Dockerfile and name", files: map[string]string{"src/fn/Containerfile": df},
			o:    Override{Function: "api", Context: "src/fn", Dockerfile: "Containerfile", Image: "127.0.0.1:5000/x/y"},
			want: Function{Name: "api", Context: "src/fn", Dockerfile: "Containerfile", Image: "127.0.0.1:5000/x/y"}, src: "gantry run flags"},
		{name: "no file, no image", files: map[string]string{"Dockerfile": df},
			o: Override{Dockerfile: "Dockerfile"}, err: "give --image REPO", isOvr: true},
		{name: "no file: missing Dockerfile", files: map[string]string{"README": "x"},
			o: Override{Image: "r.example/a"}, err: "Dockerfile"},
		{name: "one function: image replaced, rest kept", files: map[string]string{"gantry.yaml": oneFn, "fn/Dockerfile": df},
			o:    Override{Image: "ghcr.io/acme/hello"},
			want: Function{Name: "hello", Context: "fn", Dockerfile: "Dockerfile", Image: "ghcr.io/acme/hello"}, src: "gantry.yaml with gantry run flags"},
		{name: "one function: context and Dockerfile replaced", files: map[string]string{"gantry.yaml": oneFn, "other/Dockerfile.prod": df},
			o:    Override{Function: "hello", Context: "other", Dockerfile: "Dockerfile.prod"},
			want: Function{Name: "hello", Context: "other", Dockerfile: "Dockerfile.prod", Image: "r.example/team/hello"}},
		{name: "one function without image in the file", files: map[string]string{"gantry.yaml": noImage, "fn/Dockerfile": df},
			o:    Override{Image: "ghcr.io/acme/hello"},
			want: Function{Name: "hello", Context: "fn", Dockerfile: "Dockerfile", Image: "ghcr.io/acme/hello"}},
		{name: "stack.yml with one function", files: map[string]string{"stack.yml": stack, "fn/Dockerfile": df},
			o:    Override{Image: "ghcr.io/acme/hi"},
			want: Function{Name: "hi", Context: "./fn", Dockerfile: "Dockerfile", Image: "ghcr.io/acme/hi"}, src: "stack.yml with gantry run flags"},
		{name: "several functions: named in the error", files: map[string]string{"gantry.yaml": twoFns, "fn/Dockerfile": df},
			o: Override{Image: "ghcr.io/acme/x"}, err: "gantry.yaml has 2 (bye, hello)", isOvr: true},
		{name: "another function's name", files: map[string]string{"gantry.yaml": oneFn, "fn/Dockerfile": df},
			o: Override{Function: "other"}, err: `gantry.yaml's function is "hello"`, isOvr: true},
		{name: "tag refused", files: map[string]string{"Dockerfile": df},
			o: Override{Image: "r.example/a:latest"}, err: "without tag or digest", isOvr: true},
		{name: "digest refused", files: map[string]string{"Dockerfile": df},
			o: Override{Image: "r.example/a@sha256:" + strings.Repeat("a", 64)}, err: "without tag or digest", isOvr: true},
		{name: "context outside", files: map[string]string{"gantry.yaml": oneFn},
			o: Override{Context: "../x"}, err: "inside the repository", isOvr: true},
		{name: "absolute Dockerfile", files: map[string]string{"Dockerfile": df},
			o: Override{Image: "r.example/a", Dockerfile: "/etc/passwd"}, err: "relative", isOvr: true},
		{name: "bad name", files: map[string]string{"Dockerfile": df},
			o: Override{Image: "r.example/a", Function: "Not_A_Label"}, err: "DNS label", isOvr: true},
		{name: "the file is still checked", files: map[string]string{"gantry.yaml": oneFn + "colour: red\n", "fn/Dockerfile": df},
			o: Override{Image: "r.example/a"}, err: "unknown key colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := LoadWith(writeRepo(t, c.files), c.o)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				if errors.Is(err, ErrOverride) != c.isOvr {
					t.Fatalf("errors.Is(ErrOverride) = %v, want %v (%v)", !c.isOvr, c.isOvr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Functions) != 1 {
				t.Fatalf("functions %+v", r.Functions)
			}
			got := r.Functions[0]
			if got.Name != c.want.Name || got.Context != c.want.Context || got.Dockerfile != c.want.Dockerfile || got.Image != c.want.Image {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
			if got.Scale.Min < 1 {
				t.Fatalf("scale %+v: a function is deployed with at least one replica", got.Scale)
			}
			if c.src != "" && r.Source != c.src {
				t.Fatalf("source %q, want %q", r.Source, c.src)
			}
		})
	}
}

// The flags cannot reach outside the checkout through a link either.
func TestLoadWithRefusesLinkedContext(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := writeRepo(t, map[string]string{"README": "x"})
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadWith(root, Override{Image: "r.example/a", Context: "link"}); err == nil || !strings.Contains(err.Error(), "outside the repository") {
		t.Fatalf("linked context: %v", err)
	}
}

func TestLoadWithZeroIsLoad(t *testing.T) {
	if _, err := LoadWith(t.TempDir(), Override{}); err == nil || !strings.Contains(err.Error(), "nothing to build") || errors.Is(err, ErrOverride) {
		t.Fatalf("empty repo without flags: %v", err)
	}
}

// FuzzOverride: whatever flags are accepted give a function the pipeline
// can build from inside the repository.
func FuzzOverride(f *testing.F) {
	f.Add("hello", ".", "Dockerfile", "ghcr.io/acme/hello")
	f.Add("", "../x", "/etc/passwd", "r.example/a:latest")
	f.Add("", "a/../..", "Dockerfile", "UPPER/Case")
	root := f.TempDir()
	if err := os.WriteFile(filepath.Join(root, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, fn, ctx, df, image string) {
		r, err := LoadWith(root, Override{Function: fn, Context: ctx, Dockerfile: df, Image: image})
		if err != nil {
			return
		}
		for _, g := range r.Functions {
			if checkName(g.Name) != nil || checkImage(g.Image) != nil || relPathInside(g.Context) != nil || relPathInside(g.Dockerfile) != nil {
				t.Fatalf("accepted an invalid function: %+v", g)
			}
		}
	})
}
