// Package tlsreload serves a TLS certificate from files that are
// re-read when they change (cert-manager and kubelet secret updates rotate
// them in place), and can write a self-signed CA and serving certificate for
// demos and tests.
package tlsreload

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Reloader hands out the certificate in CertFile/KeyFile, reloading it when
// either file's size or modification time changes. A rotation that leaves
// a broken pair keeps the last good certificate and reports the error.
type Reloader struct {
	certFile, keyFile string
	minCheck          time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string
	lastCheck time.Time
	lastErr   error
	onReload  func(Reloaded)
}

// Reloaded describes a certificate that replaced the one being served.
type Reloaded struct {
	CertFile string
	// Leaf is the new serving certificate.
	Leaf *x509.Certificate
	// SHA256 is the hex fingerprint of Leaf (what operators compare).
	SHA256 string
}

// OnReload registers f to be called, outside any lock, each time a changed
// pair is loaded after the first: a certificate rotation is an event worth
// an audit record.
func (r *Reloader) OnReload(f func(Reloaded)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onReload = f
}

// NewReloader loads the pair once; a pair that does not load is an error.
func NewReloader(certFile, keyFile string) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, minCheck: time.Second}
	if err := r.reload(true); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reloader) fileStamp() (string, error) {
	var b bytes.Buffer
	for _, f := range []string{r.certFile, r.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
	}
	return b.String(), nil
}

// reload re-reads the files if they changed (or force). Callers hold no lock.
func (r *Reloader) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !force && now.Sub(r.lastCheck) < r.minCheck {
		return r.lastErr
	}
	r.lastCheck = now
	stamp, err := r.fileStamp()
	if err != nil {
		r.lastErr = fmt.Errorf("tls certificate: %w", err)
		return r.lastErr
	}
	if !force && stamp == r.stamp {
		return r.lastErr
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// The files may be mid-rotation; keep serving the last good pair.
		r.lastErr = fmt.Errorf("tls certificate %s / key %s: %w", r.certFile, r.keyFile, err)
		return r.lastErr
	}
	rotated := r.cert != nil
	r.cert, r.stamp, r.lastErr = &c, stamp, nil
	if rotated && r.onReload != nil && c.Leaf != nil {
		sum := sha256.Sum256(c.Leaf.Raw)
		ev, f := Reloaded{CertFile: r.certFile, Leaf: c.Leaf, SHA256: hex.EncodeToString(sum[:])}, r.onReload
		// Called without r.mu held: f may take its time (an audit sink).
		defer func() { go f(ev) }()
	}
	return nil
}

// GetCertificate is for tls.Config.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	_ = r.reload(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cert == nil {
		return nil, errors.New("no serving certificate loaded")
	}
	return r.cert, nil
}

// Err is the last reload error (nil when the files load).
func (r *Reloader) Err() error {
	_ = r.reload(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// TLSConfig is the server configuration: TLS 1.2 or newer, the certificate
// from r.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// Files are the paths SelfSigned writes.
type Files struct {
	CA, Cert, Key string
}

// SelfSigned writes ca.crt, tls.crt and tls.key into dir for the given DNS
// names and IPs (e.g. gantry-admission.gantry-system.svc, 127.0.0.1), unless
// a valid pair for exactly those names that is not about to expire is
// already there. The CA key is not kept: a new pair means a new CA, and the
// caBundle of the webhook configuration must be updated.
func SelfSigned(dir string, hosts []string, validFor time.Duration) (Files, error) {
	f := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")}
	if len(hosts) == 0 {
		return f, errors.New("self-signed certificate: at least one DNS name or IP is required")
	}
	if ok := reusable(f, hosts); ok {
		return f, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	caPEM, certPEM, keyPEM, err := Generate(hosts, validFor)
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path string
		b    []byte
		mode os.FileMode
	}{{f.CA, caPEM, 0o644}, {f.Key, keyPEM, 0o600}, {f.Cert, certPEM, 0o644}} {
		tmp := w.path + ".tmp"
		if err := os.WriteFile(tmp, w.b, w.mode); err != nil {
			return f, err
		}
		if err := os.Rename(tmp, w.path); err != nil {
			return f, err
		}
	}
	return f, nil
}

func reusable(f Files, hosts []string) bool {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || time.Until(leaf.NotAfter) < 24*time.Hour {
		return false
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return false
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return false
	}
	for _, h := range hosts {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: h}); err != nil {
			return false
		}
	}
	return true
}

// Generate makes a CA and a serving certificate signed by it, as PEM.
func Generate(hosts []string, validFor time.Duration) (caPEM, certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		validFor = 365 * 24 * time.Hour
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "gantry-admission-ca"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
