package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/gantry-dev/gantry/admission"
	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/tlsreload"
)

func newHandler(t testing.TB) *Handler {
	t.Helper()
	cfg := config.DefaultAdmission()
	cfg.VerifySignatures = false // signatures are covered by the evaluator and e2e tests
	e, err := admission.New(cfg, admission.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return New(e, Options{MaxBodyBytes: 256 << 10})
}

var goodPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"securityContext":{"runAsUser":1000,"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"app","image":"r/app@sha256:` + sha + `","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}`

const badPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"fn"},"spec":{"containers":[{"name":"app","image":"r/app","securityContext":{"privileged":true,"runAsUser":0}}]}}`

var sha = strings.Repeat("ab", 32)

func review(kind, group, version, sub, op, obj string) string {
	return fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1","kind":{"group":%q,"version":%q,"kind":%q},"resource":{"group":%q,"version":%q,"resource":"x"},"subResource":%q,"namespace":"fn","operation":%q,"userInfo":{"username":"alice"},"object":%s}}`,
		group, version, kind, group, version, sub, op, obj)
}

func post(t *testing.T, h http.Handler, body, ct string) (*httptest.ResponseRecorder, *admissionv1.AdmissionReview) {
	t.Helper()
	return postTo(t, h, "/validate", body, ct)
}

func TestValidate(t *testing.T) {
	h := newHandler(t)
	deployment := func(spec string) string {
		return `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"fn"},"spec":{"template":{"spec":` + spec + `}}}`
	}
	var goodSpec, badSpec struct {
		Spec json.RawMessage `json:"spec"`
	}
	_ = json.Unmarshal([]byte(goodPod), &goodSpec)
	_ = json.Unmarshal([]byte(badPod), &badSpec)
	cases := []struct {
		name     string
		body, ct string
		status   int
		allowed  bool
		contains string
	}{
		{"good pod", review("Pod", "", "v1", "", "CREATE", goodPod), "application/json", 200, true, ""},
		{"bad pod", review("Pod", "", "v1", "", "CREATE", badPod), "application/json", 200, false, "Pod fn/p refused"},
		{"bad deployment", review("Deployment", "apps", "v1", "", "CREATE", deployment(string(badSpec.Spec))), "application/json", 200, false, "Deployment fn/d refused"},
		{"good deployment", review("Deployment", "apps", "v1", "", "UPDATE", deployment(string(goodSpec.Spec))), "", 200, true, ""},
		{"ephemeral containers", review("Pod", "", "v1", "ephemeralcontainers", "UPDATE", badPod), "application/json", 200, false, "privileged"},
		{"other subresource", review("Pod", "", "v1", "status", "UPDATE", goodPod), "application/json", 200, false, `subresource "status"`},
		{"unsupported kind", review("Service", "", "v1", "", "CREATE", `{}`), "application/json", 200, false, "unsupported kind v1/Service"},
		{"old deployment version", review("Deployment", "apps", "v1beta1", "", "CREATE", `{}`), "application/json", 200, false, "unsupported kind"},
		{"object of the wrong shape", review("Pod", "", "v1", "", "CREATE", `{"spec":{"containers":7}}`), "application/json", 200, false, "decode Pod"},
		{"missing object", review("Pod", "", "v1", "", "CREATE", `null`), "application/json", 200, false, "empty object"},
		{"delete passes", review("Pod", "", "v1", "", "DELETE", `null`), "application/json", 200, true, ""},
		{"v1beta1 review", strings.Replace(review("Pod", "", "v1", "", "CREATE", goodPod), "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), "application/json", 200, false, "admission.k8s.io/v1 AdmissionReview only"},
		{"wrong kind", strings.Replace(review("Pod", "", "v1", "", "CREATE", goodPod), `"kind":"AdmissionReview"`, `"kind":"Status"`, 1), "application/json", 200, false, "unsupported review"},
		{"no uid", strings.Replace(review("Pod", "", "v1", "", "CREATE", goodPod), `"uid":"u-1"`, `"uid":""`, 1), "application/json", 200, false, "no uid"},
		{"malformed", `{"apiVersion":`, "application/json", 400, false, ""},
		{"not an object", `[]`, "application/json", 400, false, ""},
		{"no request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "application/json", 400, false, ""},
		{"request of the wrong shape", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}`, "application/json", 400, false, ""},
		{"wrong content type", review("Pod", "", "v1", "", "CREATE", goodPod), "text/plain", 415, false, ""},
		{"too large", review("Pod", "", "v1", "", "CREATE", strings.Replace(goodPod, `"name":"p"`, `"name":"`+strings.Repeat("x", 300<<10)+`"`, 1)), "application/json", 413, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, out := post(t, h, c.body, c.ct)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body)
			}
			if out == nil {
				return
			}
			resp := out.Response
			if resp == nil || out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
				t.Fatalf("bad review: %s", w.Body)
			}
			if resp.Allowed != c.allowed {
				t.Fatalf("allowed %v, want %v: %s", resp.Allowed, c.allowed, w.Body)
			}
			if !c.allowed && (resp.Result == nil || !strings.Contains(resp.Result.Message, c.contains)) {
				t.Fatalf("message does not contain %q: %s", c.contains, w.Body)
			}
			if c.name != "no uid" && resp.UID != "u-1" {
				t.Fatalf("uid %q not echoed", resp.UID)
			}
		})
	}
}

func TestMethodsAndProbes(t *testing.T) {
	h := newHandler(t)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/validate", 405}, {"GET", "/healthz", 200}, {"GET", "/readyz", 200}, {"GET", "/metrics", 200},
		{"GET", "/mutate", 405}, {"POST", "/mutate", 400}, {"POST", "/other", 404},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, w.Code, c.status)
		}
	}
	post(t, h, review("Pod", "", "v1", "", "CREATE", badPod), "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(w.Body.String(), `gantry_admission_requests_total{decision="deny",kind="Pod"}`) {
		t.Fatalf("metrics:\n%s", w.Body)
	}
}

// The server speaks TLS with a reloaded certificate: a rotation is served
// without a restart.
func TestServeTLSAndReload(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsreload.SelfSigned(dir, []string{"127.0.0.1"}, time.Hour*48)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := tlsreload.NewReloader(files.Cert, files.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, rl.TLSConfig(), newHandler(t), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	client := func(caFile string) *http.Client {
		pool := x509.NewCertPool()
		b, _ := readFile(caFile)
		pool.AppendCertsFromPEM(b)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	url := "https://" + ln.Addr().String() + "/validate"
	resp, err := client(files.CA).Post(url, "application/json", bytes.NewReader([]byte(review("Pod", "", "v1", "", "CREATE", goodPod))))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"allowed":true`) {
		t.Fatalf("%s", body)
	}
	// Rotate: a new CA and certificate in place of the old files.
	caPEM, certPEM, keyPEM, err := tlsreload.Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newCA := dir + "/new-ca.crt"
	writeFile(t, newCA, caPEM)
	writeFile(t, files.Key, keyPEM)
	writeFile(t, files.Cert, certPEM)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client(newCA).Get("https://" + ln.Addr().String() + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated certificate never served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func FuzzReview(f *testing.F) {
	h := newHandler(f)
	f.Add(review("Pod", "", "v1", "", "CREATE", goodPod))
	f.Add(review("Pod", "", "v1", "ephemeralcontainers", "UPDATE", badPod))
	f.Add(review("CronJob", "batch", "v1", "", "CREATE", `{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"b","securityContext":{"runAsUser":0}}]}}}}}}`))
	f.Add(review("ReplicationController", "", "v1", "", "CREATE", `{"spec":{}}`))
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"UPDATE","kind":{"version":"v1","kind":"Pod"},"object":{"spec":{}},"oldObject":{"spec":{"containers":[]}}}}`)
	f.Fuzz(func(t *testing.T, body string) {
		review, status, err := DecodeReview([]byte(body))
		if err != nil {
			if status != http.StatusBadRequest {
				t.Fatalf("status %d for a decode error", status)
			}
			return
		}
		resp, _, _ := h.Review(context.Background(), review)
		if resp == nil {
			t.Fatal("no response")
		}
		if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
			t.Fatal("denial without a message")
		}
	})
}
