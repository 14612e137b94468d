package tlsreload

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSelfSignedIsReusedOnlyWhenItFits(t *testing.T) {
	dir := t.TempDir()
	f, err := SelfSigned(dir, []string{"svc.ns.svc", "127.0.0.1"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(f.Cert)
	if _, err := SelfSigned(dir, []string{"svc.ns.svc", "127.0.0.1"}, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(f.Cert); string(again) != string(first) {
		t.Fatal("a valid certificate for the same names was replaced")
	}
	if _, err := SelfSigned(dir, []string{"other.ns.svc"}, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(f.Cert); string(again) == string(first) {
		t.Fatal("a certificate for other names was reused")
	}
	if st, _ := os.Stat(f.Key); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode().Perm())
	}
	b, _ := os.ReadFile(f.Cert)
	blk, _ := pem.Decode(b)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || leaf.IsCA || leaf.DNSNames[0] != "other.ns.svc" {
		t.Fatalf("leaf: %v %+v", err, leaf)
	}
	if _, err := SelfSigned(dir, nil, time.Hour); err == nil {
		t.Fatal("no names accepted")
	}
}

func TestReloaderKeepsLastGoodPair(t *testing.T) {
	dir := t.TempDir()
	f, err := SelfSigned(dir, []string{"127.0.0.1"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	r.minCheck = 0
	good, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Cert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), filepath.Base(f.Cert)) {
		t.Fatalf("broken pair not reported: %v", err)
	}
	if c, err := r.GetCertificate(nil); err != nil || c != good {
		t.Fatal("last good certificate not kept")
	}
	_, certPEM, keyPEM, err := Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, map[string][]byte{f.Key: keyPEM, f.Cert: certPEM})
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if c, _ := r.GetCertificate(nil); c == good {
		t.Fatal("rotated pair not loaded")
	}
	if _, err := NewReloader(filepath.Join(dir, "missing"), f.Key); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestOnReloadReportsRotationsOnly(t *testing.T) {
	dir := t.TempDir()
	f, err := SelfSigned(dir, []string{"127.0.0.1"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	r.minCheck = 0
	got := make(chan Reloaded, 4)
	r.OnReload(func(ev Reloaded) { got <- ev })

	// No change, and a broken pair: no event.
	_, _ = r.GetCertificate(nil)
	if err := os.WriteFile(f.Cert, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = r.Err()
	// A good new pair: one event, with the new leaf's fingerprint.
	_, certPEM, keyPEM, err := Generate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, map[string][]byte{f.Key: keyPEM, f.Cert: certPEM})
	c, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		sum := sha256.Sum256(c.Leaf.Raw)
		if ev.CertFile != f.Cert || ev.SHA256 != hex.EncodeToString(sum[:]) || !ev.Leaf.Equal(c.Leaf) {
			t.Fatalf("event %+v does not describe the new certificate", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reload event for a rotated certificate")
	}
	select {
	case ev := <-got:
		t.Fatalf("unexpected second event: %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func writeFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
