package webhook

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/admission/images"
	"github.com/gantry-dev/gantry/admission/verification"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/oci"
)

// signedSet verifies the digests it holds. The verifier itself is tested
// in package verification and end to end with cosign (e2e_test.go).
type signedSet map[string]bool

func (s signedSet) PolicyVersion() string { return "test" }

func (s signedSet) Verify(_ context.Context, d name.Digest) (verification.Result, error) {
	if s[d.DigestStr()] {
		return verification.Result{Verified: true, Matched: []string{"ci"}}, nil
	}
	return verification.Result{Reason: verification.ReasonNoSignature, Message: "no signature for " + d.DigestStr()}, nil
}

// mutateHandler serves a handler whose evaluator resolves tags in an
// in-memory registry; it returns the handler and the registry host.
func mutateHandler(t testing.TB) (*Handler, string, map[string]string, *images.Inspector) {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	reg, err := oci.New(config.Registry{Insecure: []string{host}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	digests := map[string]string{}
	signed := signedSet{}
	for _, n := range []string{"good", "unsigned"} {
		img, err := random.Image(64, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := reg.ParseReference(host + "/fn/" + n + ":1.2")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, reg.RemoteOptions(context.Background())...); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		digests[n] = d.String()
	}
	signed[digests["good"]] = true
	cfg := config.DefaultAdmission()
	ins := images.New(reg, images.Options{MaxEntries: 10, TagTTL: 30 * time.Second})
	e, err := admission.New(cfg, admission.Options{Verifier: verification.NewCache(signed, verification.Options{
		PositiveTTL: time.Minute, NegativeTTL: time.Second, MaxEntries: 10}), Registry: reg, Images: ins})
	if err != nil {
		t.Fatal(err)
	}
	return New(e, Options{MaxBodyBytes: 256 << 10}), host, digests, ins
}

// postTo posts an AdmissionReview body to path and decodes a 200 answer.
func postTo(t *testing.T, h http.Handler, path, body, ct string) (*httptest.ResponseRecorder, *admissionv1.AdmissionReview) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		return w, nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("response not JSON: %v\n%s", err, w.Body)
	}
	return w, &out
}

func TestMutateReviews(t *testing.T) {
	h, host, digests, _ := mutateHandler(t)
	good, unsigned := host+"/fn/good:1.2", host+"/fn/unsigned:1.2"
	goodPinned := good + "@" + digests["good"]
	podWith := func(images ...string) string {
		var cs []string
		for i, img := range images {
			cs = append(cs, `{"name":"c`+string(rune('0'+i))+`","image":"`+img+`"}`)
		}
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"containers":[` + strings.Join(cs, ",") + `]}}`
	}
	deployment := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"fn"},"spec":{"template":{"spec":{"initContainers":[{"name":"i","image":"` + good + `"}],"containers":[{"name":"a","image":"` + goodPinned + `"}]}}}}`
	ephemeral := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"containers":[{"name":"a","image":"` + unsigned + `"}],"ephemeralContainers":[{"name":"dbg","image":"` + good + `"}]}}`
	cases := []struct {
		name, body, ct string
		status         int
		allowed        bool
		// images after the patch, by JSON pointer (nil: no patch)
		want     map[string]string
		contains []string
	}{
		{name: "kubectl run with a tag of a signed image", body: review("Pod", "", "v1", "", "CREATE", podWith(good)), status: 200, allowed: true,
			want: map[string]string{"/spec/containers/0/image": goodPinned}},
		{name: "already pinned: no patch", body: review("Pod", "", "v1", "", "CREATE", podWith(goodPinned)), ct: "application/json", status: 200, allowed: true},
		{name: "tag of an unsigned image refused naming tag and digest", body: review("Pod", "", "v1", "", "CREATE", podWith(good, unsigned)), status: 200,
			contains: []string{`image "` + unsigned + `"`, "the tag resolves to " + host + "/fn/unsigned@" + digests["unsigned"], "not signed by a trusted identity"}},
		{name: "deployment template init container", body: review("Deployment", "apps", "v1", "", "CREATE", deployment), status: 200, allowed: true,
			want: map[string]string{"/spec/template/spec/initContainers/0/image": goodPinned}},
		{name: "ephemeral containers only on the subresource", body: review("Pod", "", "v1", "ephemeralcontainers", "UPDATE", ephemeral), status: 200, allowed: true,
			want: map[string]string{"/spec/ephemeralContainers/0/image": goodPinned}},
		{name: "unknown tag refused (fail closed)", body: review("Pod", "", "v1", "", "CREATE", podWith(host+"/fn/good:nope")), status: 200,
			contains: []string{"could not resolve the tag to a digest"}},
		{name: "other subresource", body: review("Pod", "", "v1", "status", "UPDATE", podWith(good)), status: 200, contains: []string{`subresource "status"`}},
		{name: "unsupported kind", body: review("Service", "", "v1", "", "CREATE", `{}`), status: 200, contains: []string{"unsupported kind v1/Service"}},
		{name: "delete passes", body: review("Pod", "", "v1", "", "DELETE", `null`), status: 200, allowed: true},
		{name: "v1beta1 review", body: strings.Replace(review("Pod", "", "v1", "", "CREATE", podWith(good)), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), status: 200,
			contains: []string{"admission.k8s.io/v1 AdmissionReview only"}},
		{name: "malformed", body: `{"apiVersion":`, status: 400},
		{name: "wrong content type", body: review("Pod", "", "v1", "", "CREATE", podWith(good)), ct: "text/plain", status: 415},
		{name: "too large", body: review("Pod", "", "v1", "", "CREATE", strings.Replace(podWith(good), `"name":"p"`, `"name":"`+strings.Repeat("x", 300<<10)+`"`, 1)), status: 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct := c.ct
			if ct == "" {
				ct = "application/json"
			}
			w, out := postTo(t, h, "/mutate", c.body, ct)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if out == nil {
				return
			}
			resp := out.Response
			if resp == nil || out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || resp.UID != "u-1" {
				t.Fatalf("bad review: %s", w.Body)
			}
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed %v, want %v: %s", resp.Allowed, c.allowed, w.Body)
			}
			for _, s := range c.contains {
				if resp.Result == nil || !strings.Contains(resp.Result.Message, s) {
					t.Errorf("%q missing from: %s", s, w.Body)
				}
			}
			if c.want == nil {
				if resp.Patch != nil || resp.PatchType != nil {
					t.Fatalf("unexpected patch: %s", w.Body)
				}
				return
			}
			if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patch type: %s", w.Body)
			}
			// Apply the patch as the API server does, to the object it sent.
			var in admissionv1.AdmissionReview
			if err := json.Unmarshal([]byte(c.body), &in); err != nil {
				t.Fatal(err)
			}
			p, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := p.Apply(in.Request.Object.Raw)
			if err != nil {
				t.Fatalf("apply %s: %v", resp.Patch, err)
			}
			var doc any
			if err := json.Unmarshal(patched, &doc); err != nil {
				t.Fatal(err)
			}
			for ptr, img := range c.want {
				if got := lookup(doc, ptr); got != img {
					t.Errorf("%s = %v, want %s", ptr, got, img)
				}
			}
			if n := strings.Count(string(patched), "@sha256:"); n != strings.Count(c.body, "@sha256:")+len(c.want) {
				t.Errorf("patch touched %d images, want %d:\n%s", n-strings.Count(c.body, "@sha256:"), len(c.want), patched)
			}
			if !strings.Contains(resp.AuditAnnotations["pinned"], good+" → "+digests["good"]) {
				t.Errorf("audit annotations: %v", resp.AuditAnnotations)
			}
		})
	}
	mw := httptest.NewRecorder()
	h.ServeHTTP(mw, httptest.NewRequest("GET", "/metrics", nil))
	for _, s := range []string{`gantry_admission_mutate_requests_total{decision="patch",kind="Pod"} 2`, `gantry_admission_mutate_requests_total{decision="deny",kind="Pod"}`,
		`gantry_admission_images_pinned_total 3`, `gantry_admission_mutate_review_duration_seconds_count{kind="Deployment"} 1`} {
		if !strings.Contains(mw.Body.String(), s) {
			t.Errorf("metrics lack %s", s)
		}
	}
}

func lookup(doc any, ptr string) any {
	for _, p := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		switch v := doc.(type) {
		case map[string]any:
			doc = v[p]
		case []any:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			if i >= len(v) {
				return nil
			}
			doc = v[i]
		default:
			return nil
		}
	}
	return doc
}

// FuzzMutateReview: no body makes /mutate panic, allow without saying why
// it refused, or answer a patch the API server could not apply to the
// object it sent. Offline (no registry): tags are refused, pinned images
// pass without a patch.
func FuzzMutateReview(f *testing.F) {
	cfg := config.DefaultAdmission()
	e, err := admission.New(cfg, admission.Options{})
	if err != nil {
		f.Fatal(err)
	}
	h := New(e, Options{MaxBodyBytes: 256 << 10})
	f.Add(review("Pod", "", "v1", "", "CREATE", goodPod))
	f.Add(review("Pod", "", "v1", "", "CREATE", badPod))
	f.Add(review("Pod", "", "v1", "ephemeralcontainers", "UPDATE", badPod))
	f.Add(review("CronJob", "batch", "v1", "", "CREATE", `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"b:1"}]}}}}}}`))
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"UPDATE","kind":{"version":"v1","kind":"Pod"},"object":{"spec":{}},"oldObject":{"spec":{"containers":[]}}}}`)
	f.Fuzz(func(t *testing.T, body string) {
		rev, status, err := DecodeReview([]byte(body))
		if err != nil {
			if status != http.StatusBadRequest {
				t.Fatalf("status %d for a decode error", status)
			}
			return
		}
		resp, _, decision := h.MutateReview(context.Background(), rev)
		if resp == nil {
			t.Fatal("no response")
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
			t.Fatal("denial without a message")
		}
		if resp.Allowed != (decision == "allow" || decision == "patch") {
			t.Fatalf("allowed %v with decision %q", resp.Allowed, decision)
		}
		if resp.Patch != nil {
			p, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatalf("patch does not decode: %v", err)
			}
			if _, err := p.Apply(rev.Request.Object.Raw); err != nil && !strings.Contains(err.Error(), "test failed") {
				t.Fatalf("patch does not apply: %v", err)
			}
		}
	})
}

// A tag reviewed again within the tag TTL (admission.cache.negativeTTL)
// makes no registry call: the tag's digest and its verdict are cached.
func TestMutateWarmMakesNoRegistryCall(t *testing.T) {
	h, host, _, ins := mutateHandler(t)
	body := review("Pod", "", "v1", "", "CREATE", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"`+host+`/fn/good:1.2"}]}}`)
	for i := range 3 {
		before := ins.RegistryCalls()
		w, out := postTo(t, h, "/mutate", body, "application/json")
		if out == nil || !out.Response.Allowed || out.Response.Patch == nil {
			t.Fatalf("review %d: %s", i, w.Body)
		}
		if n := ins.RegistryCalls() - before; (i == 0) != (n > 0) {
			t.Fatalf("review %d made %d registry calls", i, n)
		}
	}
}

// BenchmarkMutateWarm is the server-side cost of pinning one cached tag.
func BenchmarkMutateWarm(b *testing.B) {
	h, host, _, _ := mutateHandler(b)
	body := review("Pod", "", "v1", "", "CREATE", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"`+host+`/fn/good:1.2"}]}}`)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"patchType":"JSONPatch"`) {
			b.Fatal(w.Body.String())
		}
	}
}
