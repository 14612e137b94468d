package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/internal/testenv"
	"github.com/gantry-dev/gantry/internal/tlsreload"
	"github.com/gantry-dev/gantry/internal/wait"
)

// A serving-certificate rotation is a config reload: gantry admission keeps
// serving without a restart and writes a config.reload audit record naming
// the new certificate's fingerprint.
func TestAdmissionAuditsCertificateRotation(t *testing.T) {
	t.Parallel()
	testenv.Require(t) // runs the gantry process, like the other process tests
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gantry.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("queue: {dataDir: %q}\nadmission: {listen: 127.0.0.1:0}\n", filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	p := startGantryUntil(t, admissionListeningRE, filepath.Join(dir, "admission.log"),
		"admission", "--config", cfg, "--tls-self-signed", tlsDir)

	caPEM, certPEM, keyPEM, err := tlsreload.Generate([]string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, "tls.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, "tls.crt"), certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("Generate wrote no PEM certificate")
	}
	sum := sha256.Sum256(block.Bytes)
	wantSHA := hex.EncodeToString(sum[:])

	// Only the new CA is trusted now: a handshake that succeeds proves the
	// new pair is served, without a restart.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	auditFile := filepath.Join(dir, "data", "audit.jsonl")
	served := false
	defer func() {
		if !served {
			t.Logf("log:\n%s", readFile(t, p.logFile))
		}
	}()
	line := wait.For(t, 20*time.Second, "the rotated certificate served and its config.reload record", func() (string, error) {
		resp, err := client.Get("https://" + p.addr + "/healthz")
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		b, err := os.ReadFile(auditFile)
		if err != nil {
			return "", err
		}
		line := lastLineContaining(string(b), wantSHA)
		if line == "" {
			return "", fmt.Errorf("no record of %s in the audit log:\n%s", wantSHA, b)
		}
		return line, nil
	})
	served = true
	var e audit.Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatal(err)
	}
	if e.Action != audit.ActionConfigReload || e.Actor != "gantry" || e.Target != "admission tls certificate" ||
		e.Details["certFile"] != filepath.Join(tlsDir, "tls.crt") || e.Details["notAfter"] == "" {
		t.Fatalf("audit record %s", line)
	}
}

func lastLineContaining(s, sub string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}
