package repoconfig

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nodeTemplateYAML = `language: node
fprocess: node index.js
welcome_message: hi
build_options:
  - name: dev
    packages: [make, git]
  - name: img
    packages: [vips-dev]
`

// nodeTemplate is a template in OpenFaaS' layout (template.yml, a
// Dockerfile, an entry point and a sample handler in function/).
func nodeTemplate(prefix string) map[string]string {
	return map[string]string{
		prefix + "template.yml":        nodeTemplateYAML,
		prefix + "Dockerfile":          "FROM scratch\nARG ADDITIONAL_PACKAGE\nCOPY . /home/app\n",
		prefix + "index.js":            "require('./function/handler')\n",
		prefix + "function/handler.js": "// sample handler\n",
		prefix + "function/sample.txt": "kept unless the handler replaces it\n",
	}
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func readAt(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return string(b)
}

func TestShrinkwrapLocalTemplate(t *testing.T) {
	root := writeRepo(t, merge(nodeTemplate("template/node/"), map[string]string{
		StackFile: `functions:
  greet:
    lang: node
    handler: ./greet
    image: r.example/greet
    build_options: [dev, img]
    build_args: {ADDITIONAL_PACKAGE: curl}
  plain:
    lang: dockerfile
    handler: ./plain
    image: r.example/plain
configuration:
  copy: [./common]
`,
		"greet/handler.js":      "module.exports = () => 'hello'\n",
		"greet/package.json":    "{}\n",
		"greet/build/stale.txt": "faas-cli output: never copied\n",
		"greet/template/x":      "never copied\n",
		"common/util.js":        "exports.x = 1\n",
		"plain/Dockerfile":      "FROM scratch\n",
	}))
	r, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := Shrinkwrap(context.Background(), root, r, TemplateOptions{}); err != nil {
		t.Fatal(err)
	}
	greet, plain := r.Functions[0], r.Functions[1]
	if greet.Context != ".gantry-build/greet" || greet.Dockerfile != "Dockerfile" {
		t.Fatalf("greet: context %q dockerfile %q", greet.Context, greet.Dockerfile)
	}
	if plain.Context != "./plain" {
		t.Errorf("a dockerfile function was moved: %q", plain.Context)
	}
	if got := greet.BuildArgs["ADDITIONAL_PACKAGE"]; got != "make git vips-dev curl" {
		t.Errorf("ADDITIONAL_PACKAGE = %q", got)
	}
	ctx := filepath.Join(root, greet.Context)
	for rel, want := range map[string]string{
		"Dockerfile":            "FROM scratch\nARG ADDITIONAL_PACKAGE\nCOPY . /home/app\n",
		"index.js":              "require('./function/handler')\n",
		"function/handler.js":   "module.exports = () => 'hello'\n",
		"function/package.json": "{}\n",
		"function/sample.txt":   "kept unless the handler replaces it\n",
		"common/util.js":        "exports.x = 1\n",
	} {
		if got := readAt(t, ctx, rel); got != want {
			t.Errorf("%s = %q, want %q", rel, got, want)
		}
	}
	for _, rel := range []string{"function/build", "function/template"} {
		if _, err := os.Stat(filepath.Join(ctx, rel)); !os.IsNotExist(err) {
			t.Errorf("%s was copied (%v)", rel, err)
		}
	}
	// Again (a resumed run on another worker): the same layout, nothing stale.
	if err := os.WriteFile(filepath.Join(ctx, "junk"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := Shrinkwrap(context.Background(), root, r2, TemplateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ctx, "junk")); !os.IsNotExist(err) {
		t.Error("a second Shrinkwrap kept a stale file")
	}
}

func TestShrinkwrapHandlerFolder(t *testing.T) {
	tmpl := nodeTemplate("template/py/")
	tmpl["template/py/template.yml"] = "language: python3\nhandler_folder: src\n"
	root := writeRepo(t, merge(tmpl, map[string]string{
		StackFile:      "functions:\n  f:\n    lang: py\n    handler: ./f\n    image: r.example/f\n",
		"f/handler.py": "def handle(req): return req\n",
	}))
	r, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := Shrinkwrap(context.Background(), root, r, TemplateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := readAt(t, filepath.Join(root, r.Functions[0].Context), "src/handler.py"); !strings.Contains(got, "def handle") {
		t.Errorf("src/handler.py = %q", got)
	}
}

// A template named in configuration.templates is fetched once per pinned
// source, from an allowed host only, and used like a committed one.
func TestShrinkwrapPinnedSource(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	upstream := writeRepo(t, merge(nodeTemplate("template/node/"), nodeTemplate("template/node-lts/")))
	stack := func(url string) string {
		return `functions:
  a: {lang: node, handler: ./a, image: r.example/a}
  b: {lang: node-lts, handler: ./b, image: r.example/b}
configuration:
  templates:
    - {name: node, source: "` + url + `#` + sha + `"}
    - {name: node-lts, source: "` + url + `#` + sha + `"}
`
	}
	var fetches []string
	opts := TemplateOptions{Hosts: []string{"github.com"}, WorkDir: t.TempDir(),
		Fetch: func(_ context.Context, url, commit, dir string) error {
			fetches = append(fetches, url+"#"+commit)
			return os.CopyFS(dir, os.DirFS(upstream))
		}}
	root := writeRepo(t, map[string]string{StackFile: stack("https://GitHub.com/openfaas/templates"),
		"a/handler.js": "a\n", "b/handler.js": "b\n"})
	r, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := Shrinkwrap(context.Background(), root, r, opts); err != nil {
		t.Fatal(err)
	}
	if len(fetches) != 1 || fetches[0] != "https://GitHub.com/openfaas/templates#"+sha {
		t.Errorf("fetches %q, want the one pinned source once", fetches)
	}
	if got := readAt(t, filepath.Join(root, r.Functions[1].Context), "function/handler.js"); got != "b\n" {
		t.Errorf("b's handler = %q", got)
	}

	for name, url := range map[string]string{
		"host not allowed":   "https://evil.example/openfaas/templates",
		"plain http":         "http://github.com/openfaas/templates",
		"credentials in URL": "https://user:token@github.com/openfaas/templates",
		"local path":         upstream,
	} {
		t.Run(name, func(t *testing.T) {
			fetches = nil
			root := writeRepo(t, map[string]string{StackFile: stack(url), "a/handler.js": "a\n", "b/handler.js": "b\n"})
			r, err := Load(root)
			if err != nil {
				t.Fatal(err)
			}
			err = Shrinkwrap(context.Background(), root, r, opts)
			if err == nil || !strings.Contains(err.Error(), "pipeline.templateHosts") {
				t.Fatalf("err = %v, want a refusal naming pipeline.templateHosts", err)
			}
			if len(fetches) != 0 {
				t.Errorf("fetched %q anyway", fetches)
			}
		})
	}
}

// What a hostile repository or template could try: every case is refused
// and nothing is written outside the build directory.
func TestShrinkwrapRefuses(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stack := "functions:\n  f:\n    lang: node\n    handler: ./f\n    image: r.example/f\n"
	cases := []struct {
		name  string
		files map[string]string
		setup func(t *testing.T, root string)
		stack string
		want  string
	}{
		{"no such template", map[string]string{"f/h.js": "x"}, nil, stack, "faas-cli template pull"},
		{"not a template (no template.yml)", map[string]string{"template/node/Dockerfile": "FROM scratch\n", "f/h.js": "x"}, nil, stack, "not an OpenFaaS template"},
		{"no Dockerfile", map[string]string{"template/node/template.yml": "language: node\n", "f/h.js": "x"}, nil, stack, "no Dockerfile"},
		{"unknown build option", merge(nodeTemplate("template/node/"), map[string]string{"f/h.js": "x"}), nil,
			stack + "    build_options: [gpu]\n", `build_options "gpu": the template offers ["dev" "img"]`},
		{"template directory is a link out", map[string]string{"f/h.js": "x"}, func(t *testing.T, root string) {
			mustSymlink(t, outside, filepath.Join(root, "template", "node"))
		}, stack, "outside the repository"},
		{"Dockerfile is a link to a host file", merge(nodeTemplate("template/node/"), map[string]string{"f/h.js": "x"}), func(t *testing.T, root string) {
			_ = os.Remove(filepath.Join(root, "template/node/Dockerfile"))
			mustSymlink(t, filepath.Join(outside, "secret"), filepath.Join(root, "template/node/Dockerfile"))
		}, stack, "no Dockerfile"},
		{"function/ is a link out, written through by the handler", merge(nodeTemplate("template/node/"), map[string]string{"f/h.js": "x"}), func(t *testing.T, root string) {
			_ = os.RemoveAll(filepath.Join(root, "template/node/function"))
			mustSymlink(t, outside, filepath.Join(root, "template/node/function"))
		}, stack, "a link in the template is in the way"},
		{"handler_folder escapes", merge(nodeTemplate("template/node/"), map[string]string{"f/h.js": "x",
			"template/node/template.yml": "language: node\nhandler_folder: ../../x\n"}), nil, stack, "handler_folder"},
		{"handler is a link out", merge(nodeTemplate("template/node/")), func(t *testing.T, root string) {
			mustSymlink(t, outside, filepath.Join(root, "f"))
		}, stack, "outside the repository"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := writeRepo(t, merge(c.files, map[string]string{StackFile: c.stack}))
			if c.setup != nil {
				c.setup(t, root)
			}
			r, err := Load(root)
			if err == nil {
				err = Shrinkwrap(context.Background(), root, r, TemplateOptions{})
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			entries, err := os.ReadDir(outside)
			if err != nil || len(entries) != 1 {
				t.Errorf("the directory outside now holds %d entries (%v)", len(entries), err)
			}
		})
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
