package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
)

// TestAdmissionMutateProcess: the real `gantry admission` serves POST
// /mutate; a tag of an image that `gantry sign` signed is answered with a
// JSON Patch pinning the digest, and a tag of an unsigned image is refused
// naming both (the producer, gantry sign, against its consumer).
func TestAdmissionMutateProcess(t *testing.T) {
	t.Parallel()
	e := testenv.Require(t)
	dir := t.TempDir()
	keyPath, _ := cosignKeyFiles(t, dir)
	write := fileWriter(t, dir)
	policy := write("policy.yaml", []byte("identities:\n  - {name: release, key: cosign.pub}\n"))
	repo := fmt.Sprintf("%s/admission-mutate/%d", e.Registry, time.Now().UnixNano())
	signed, unsigned := pushRandom(t, repo+"/signed:1.2"), pushRandom(t, repo+"/unsigned:1.2")
	if code, _, stderr := gantry(t, []string{"GANTRY_REGISTRY_INSECURE=" + e.Registry, "COSIGN_PASSWORD=pw"}, "sign", signed, "--key", keyPath); code != exitOK {
		t.Fatalf("sign: exit %d: %s", code, stderr)
	}
	cfg := write("gantry.yaml", []byte(fmt.Sprintf(`
queue: {dataDir: %q}
registry: {insecure: [%q], timeout: 5s}
admission:
  listen: 127.0.0.1:0
  signerPolicy: %q
`, filepath.Join(dir, "data"), e.Registry, policy)))
	tlsDir := filepath.Join(dir, "tls")
	p := startGantryUntil(t, admissionListeningRE, filepath.Join(dir, "admission.log"), "admission", "--config", cfg, "--tls-self-signed", tlsDir)
	client := tlsClient(t, filepath.Join(tlsDir, "ca.crt"))
	_, port, _ := strings.Cut(p.addr, "]:")
	if port == "" {
		_, port, _ = strings.Cut(p.addr, ":")
	}
	mutate := func(image string) (allowed bool, patch, message string) {
		t.Helper()
		body := fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",
"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
"namespace":"fn","operation":"CREATE","userInfo":{"username":"alice"},
"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"fn","namespace":"fn"},"spec":{"containers":[{"name":"fn","image":%q}]}}}}`, image)
		resp, err := client.Post("https://localhost:"+port+"/mutate", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Response struct {
				Allowed   bool    `json:"allowed"`
				Patch     string  `json:"patch"`
				PatchType *string `json:"patchType"`
				Status    *struct {
					Message string `json:"message"`
				} `json:"status"`
			} `json:"response"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("mutate: %d %v\n%s", resp.StatusCode, err, readFile(t, p.logFile))
		}
		r := out.Response
		if r.Patch != "" {
			if r.PatchType == nil || *r.PatchType != "JSONPatch" {
				t.Fatalf("patch without patchType JSONPatch")
			}
			b, err := base64.StdEncoding.DecodeString(r.Patch)
			if err != nil {
				t.Fatal(err)
			}
			patch = string(b)
		}
		if r.Status != nil {
			message = r.Status.Message
		}
		return r.Allowed, patch, message
	}
	signedRepo, signedDigest, _ := strings.Cut(signed, "@")
	allowed, patch, msg := mutate(signedRepo + ":1.2")
	want := `{"op":"replace","path":"/spec/containers/0/image","value":"` + signedRepo + ":1.2@" + signedDigest + `"}`
	if !allowed || !strings.Contains(patch, want) {
		t.Fatalf("signed tag: allowed=%v patch=%s message=%s", allowed, patch, msg)
	}
	unsignedRepo, unsignedDigest, _ := strings.Cut(unsigned, "@")
	allowed, patch, msg = mutate(unsignedRepo + ":1.2")
	if allowed || patch != "" || !strings.Contains(msg, unsignedRepo+":1.2") || !strings.Contains(msg, unsignedDigest) {
		t.Fatalf("unsigned tag: allowed=%v patch=%s message=%s", allowed, patch, msg)
	}
	if allowed, patch, _ := mutate(signed); !allowed || patch != "" {
		t.Fatalf("pinned image: allowed=%v patch=%s", allowed, patch)
	}
}
