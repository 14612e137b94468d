package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/scanner/scantest"
)

// openfaasTemplate writes an OpenFaaS template in faas-cli's layout under
// prefix (template.yml with build_options, a Dockerfile that copies the
// handler from function/, files of its own) on the offline base image.
func openfaasTemplate(prefix, base, lang string) map[string]string {
	files := map[string]string{
		prefix + "template.yml": "language: " + lang + "\nfprocess: httpd -f -p 8080\nbuild_options:\n  - name: dev\n    packages: [make, git]\n",
		prefix + "Dockerfile": "FROM " + base + "\nARG ADDITIONAL_PACKAGE\n" +
			"LABEL org.openfaas.packages=\"${ADDITIONAL_PACKAGE}\" org.openfaas.template=\"" + lang + "\"\n" +
			"COPY rootfs/ /\nCOPY index.html /www/index.html\nCOPY function/ /www/function/\nUSER 1000:1000\n" +
			"CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
		prefix + "index.html":          "<p>" + lang + "</p>\n",
		prefix + "function/handler.sh": "# the template's sample handler\n",
	}
	for p, c := range scantest.CleanFiles() {
		files[prefix+"rootfs"+p] = c
	}
	return files
}

// TestOpenFaaSTemplatesE2E: a repository as OpenFaaS users write it — one
// function on a template committed under template/, one on a template named
// in configuration.templates (another repository, pinned to a commit), one
// `lang: dockerfile` — pushed to `gantry serve`: all three are laid out as
// faas-cli --shrinkwrap does, linted, built, scanned, signed and deployed.
func TestOpenFaaSTemplatesE2E(t *testing.T) {
	t.Parallel()
	e := testenv.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	uniq := randHex(t, 4)
	write := fileWriter(t, dir)
	dbRef := e.Registry + "/tmpl-" + uniq + "/trivy-db:2"
	pushTestDB(ctx, t, dbRef)
	keyPath, _ := cosignKeyFiles(t, dir)

	ns := "gantry-tmpl-" + uniq
	cs := kubeNamespace(ctx, t, e.Kubeconfig, ns)

	// The template repository, as openfaas/templates is laid out.
	tmplRepo := filepath.Join(dir, "templates")
	tmplCommit := gitCommit(t, tmplRepo, openfaasTemplate("template/sh-http/", e.BaseImage, "sh-http"), "sh-http template")

	img := func(fn string) string { return e.Registry + "/tmpl-" + uniq + "/" + fn }
	repoDir := filepath.Join(dir, "repo")
	files := openfaasTemplate("template/busybox-web/", e.BaseImage, "busybox-web")
	files["stack.yml"] = fmt.Sprintf(`version: 1.0
provider: {name: openfaas}
functions:
  greet:
    lang: busybox-web
    handler: ./greet
    image: %s:latest
    build_options: [dev]
  echo:
    lang: sh-http
    handler: ./echo
    image: %s:latest
  plain:
    lang: dockerfile
    handler: ./plain
    image: %s:latest
configuration:
  templates:
    - name: sh-http
      source: %s#%s
`, img("greet"), img("echo"), img("plain"), tmplRepo, tmplCommit)
	files["greet/handler.sh"] = "echo greet\n"
	files["echo/handler.sh"] = "echo echo\n"
	files["plain/Dockerfile"] = "FROM " + e.BaseImage + "\nCOPY rootfs/ /\nUSER 1000:1000\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\"]\n"
	for p, c := range scantest.CleanFiles() {
		files["plain/rootfs"+p] = c
	}
	commit := gitCommit(t, repoDir, files, "three functions")

	token := "tmpl-token-" + uniq
	secret := "tmpl webhook secret " + uniq
	cfg := write("gantry.yaml", fmt.Appendf(nil, `
registry: {insecure: [%[1]q]}
builder: {addrs: [%[2]q]}
lint: {hadolint: "off"}
scanner: {dbRepositories: [%[3]q], javaDbRepositories: [], cacheDir: %[4]q}
signer: {keySource: file, keyFile: %[5]q, passwordFile: %[6]q}
deploy: {kubeconfig: %[7]q, namespace: %[8]q, mode: kubernetes, waitForRollout: false}
server: {listen: 127.0.0.1:0, insecureHTTP: true}
webhooks:
  githubSecretFiles: [%[9]q]
  repos: [{name: acme/hello, branches: ["*"]}]
queue: {dataDir: %[10]q}
api: {tokensFile: %[11]q}
pipeline: {allowLocalRepos: true, workDir: %[12]q, mirrors: {acme/hello: %[13]q}}
`, e.Registry, e.BuildkitAddr, dbRef, filepath.Join(dir, "trivy"), keyPath, write("cosign.pw", []byte("pw")), e.Kubeconfig, ns,
		write("secret", []byte(secret)), filepath.Join(dir, "data"), write("tokens", []byte("sha256:"+sha256Hex(token)+"\n")),
		filepath.Join(dir, "work"), repoDir))
	serveLog := filepath.Join(dir, "serve.log")
	srv := startGantry(t, serveLog, "serve", "--config", cfg)

	a := pushSigned(t, srv.addr, secret, commit)
	var run pipelines.Run
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if code := apiGet(t, srv.addr, token, "/api/v1/runs/"+a.RunID, &run); code == 200 && run.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not finish\n%s", a.RunID, readFile(t, serveLog))
		}
	}
	if run.State != pipelines.StatePassed {
		var logs string
		for _, st := range []string{"checkout", "lint", "build"} {
			var l string
			apiGet(t, srv.addr, token, "/api/v1/runs/"+run.ID+"/logs?stage="+st, &l)
			logs += "== " + st + "\n" + l
		}
		t.Fatalf("run %s: %s %s\n%s", run.ID, run.State, run.Message, logs)
	}

	var checkout, lint string
	apiGet(t, srv.addr, token, "/api/v1/runs/"+run.ID+"/logs?stage=checkout", &checkout)
	apiGet(t, srv.addr, token, "/api/v1/runs/"+run.ID+"/logs?stage=lint", &lint)
	for _, want := range []string{"function greet: template busybox-web laid out in .gantry-build/greet (handler ./greet)",
		"function echo: template sh-http laid out in .gantry-build/echo (handler ./echo)"} {
		if !strings.Contains(checkout, want) {
			t.Errorf("checkout log lacks %q:\n%s", want, checkout)
		}
	}
	for _, want := range []string{"[greet] 0 error(s)", "[echo] 0 error(s)", "[plain] 0 error(s)"} {
		if !strings.Contains(lint, want) {
			t.Errorf("lint log lacks %q:\n%s", want, lint)
		}
	}
	for fn, wantLabels := range map[string]map[string]string{
		"greet": {"org.openfaas.template": "busybox-web", "org.openfaas.packages": "make git"},
		"echo":  {"org.openfaas.template": "sh-http", "org.openfaas.packages": ""},
		"plain": nil,
	} {
		ref := run.Outputs["image."+fn]
		if !strings.HasPrefix(ref, img(fn)+"@sha256:") {
			t.Errorf("%s: image %q, want %s@sha256:…", fn, ref, img(fn))
			continue
		}
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, fn, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s not deployed: %v", fn, err)
			continue
		}
		if got := dep.Spec.Template.Spec.Containers[0].Image; got != ref {
			t.Errorf("%s deployed %q, built %q", fn, got, ref)
		}
		d, err := name.NewDigest(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		im, err := remote.Image(d, remote.WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := im.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range wantLabels {
			if got := cf.Config.Labels[k]; got != v {
				t.Errorf("%s: label %s = %q, want %q (build_options → ADDITIONAL_PACKAGE)", fn, k, got, v)
			}
		}
	}

	// The template's Dockerfile is linted like any other: a template that
	// drops its USER line fails lint for its function, nothing of it is
	// built, and the other functions go on.
	df := "template/busybox-web/Dockerfile"
	commit2 := gitCommit(t, repoDir, map[string]string{df: strings.Replace(files[df], "USER 1000:1000\n", "", 1)}, "root template")
	a = pushSigned(t, srv.addr, secret, commit2)
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		run = pipelines.Run{} // decoding into the first run's record would keep its outputs
		if code := apiGet(t, srv.addr, token, "/api/v1/runs/"+a.RunID, &run); code == 200 && run.State.Final() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not finish\n%s", a.RunID, readFile(t, serveLog))
		}
	}
	apiGet(t, srv.addr, token, "/api/v1/runs/"+run.ID+"/logs?stage=lint", &lint)
	if run.State != pipelines.StateFailed || !strings.Contains(lint, "gantry-root-user") || !strings.Contains(lint, "[greet] 1 error(s)") {
		t.Errorf("run %s: %s %q; lint log:\n%s", run.ID, run.State, run.Message, lint)
	}
	if _, ok := run.Outputs["image.greet"]; ok {
		t.Errorf("greet was built from a template that fails lint: %s", run.Outputs["image.greet"])
	}
	if !strings.HasPrefix(run.Outputs["image.echo"], img("echo")+"@sha256:") {
		t.Errorf("echo was not built alongside: %v", run.Outputs)
	}
}
