package server_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/tlsreload"
	"github.com/gantry-dev/gantry/internal/wait"
	"github.com/gantry-dev/gantry/server"
)

// testCA signs serving certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: c, key: key, pool: pool}
}

// issue writes a serving certificate for hosts, valid from notBefore to
// notAfter, as tls.crt/tls.key in dir (atomically, as a Secret update does).
func (ca *testCA) issue(t *testing.T, dir string, hosts []string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	for path, b := range map[string][]byte{
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// serveTLS starts server.Serve on loopback with opts and returns its
// address; the handler counts the requests that reach it.
func serve(t *testing.T, opts server.Options) (addr string, reached *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reached = &atomic.Int64{}
	opts.Webhook = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), reached
}

func client(pool *x509.CertPool, serverName string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
}

func TestServeRefusesPlainHTTPUnlessAsked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = server.Serve(context.Background(), ln, server.Options{Webhook: http.NotFoundHandler()})
	if !errors.Is(err, server.ErrPlainHTTP) || !strings.Contains(err.Error(), "server.insecureHTTP") {
		t.Fatalf("Serve without TLS or insecureHTTP: %v, want ErrPlainHTTP naming the keys", err)
	}
}

func TestTLSServing(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	certFile, keyFile := ca.issue(t, dir, []string{"gantry.test", "127.0.0.1"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	rl, err := tlsreload.NewReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr, reached := serve(t, server.Options{TLS: rl.TLSConfig()})

	t.Run("plain HTTP to the TLS port is refused", func(t *testing.T) {
		resp, err := http.Post("http://"+addr+"/webhooks/github", "application/json", strings.NewReader("{}"))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "HTTPS") {
				t.Fatalf("plain HTTP: %d %q, want 400 naming HTTPS", resp.StatusCode, b)
			}
		}
		if reached.Load() != 0 {
			t.Fatal("a plain HTTP request reached the handler")
		}
	})
	t.Run("HTTPS with the right CA and name", func(t *testing.T) {
		for _, name := range []string{"gantry.test", "127.0.0.1"} {
			resp, err := client(ca.pool, name).Post("https://"+addr+"/webhooks/github", "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
				t.Fatalf("%s: %d %+v", name, resp.StatusCode, resp.TLS)
			}
		}
	})
	t.Run("clients refuse wrong host and unknown CA", func(t *testing.T) {
		before := reached.Load()
		for _, tc := range []struct {
			name   string
			pool   *x509.CertPool
			server string
			want   string
		}{
			{"wrong host", ca.pool, "other.test", "certificate is valid for gantry.test"},
			{"unknown CA", newCA(t).pool, "gantry.test", "certificate signed by unknown authority"},
		} {
			_, err := client(tc.pool, tc.server).Get("https://" + addr + "/healthz")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
			}
		}
		if reached.Load() != before {
			t.Fatal("a refused TLS connection reached the handler")
		}
	})
	t.Run("TLS below 1.2 is refused", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: ca.pool, ServerName: "gantry.test", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}}
		if _, err := c.Get("https://" + addr + "/healthz"); err == nil {
			t.Fatal("a TLS 1.1 client was served")
		}
	})
}

func TestExpiredCertificateIsRejectedByClients(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	certFile, keyFile := ca.issue(t, dir, []string{"gantry.test"}, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	rl, err := tlsreload.NewReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr, reached := serve(t, server.Options{TLS: rl.TLSConfig()})
	_, err = client(ca.pool, "gantry.test").Get("https://" + addr + "/healthz")
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired certificate: %v, want a certificate-expired error", err)
	}
	if reached.Load() != 0 {
		t.Fatal("request reached the handler")
	}
}

func TestCertificateRotationWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCAx := newCA(t), newCA(t)
	certFile, keyFile := oldCA.issue(t, dir, []string{"gantry.test"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	rl, err := tlsreload.NewReloader(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, server.Options{TLS: rl.TLSConfig()})
	get := func(pool *x509.CertPool) error {
		c := client(pool, "gantry.test")
		c.Transport.(*http.Transport).DisableKeepAlives = true
		resp, err := c.Get("https://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(oldCA.pool); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	// A corrupt intermediate state (half-written key) keeps the old pair.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The reloader looks at the files at most once a second; once it
	// reports the broken pair it has read it and decided what to serve.
	wait.Until(t, 10*time.Second, "the reloader to read the broken key", func() error {
		if rl.Err() == nil {
			return errors.New("the reloader still reports no error")
		}
		return nil
	})
	if err := get(oldCA.pool); err != nil {
		t.Fatalf("a broken key file replaced the good certificate: %v", err)
	}
	newCAx.issue(t, dir, []string{"gantry.test"}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	wait.Until(t, 10*time.Second, "the rotated certificate to be served", func() error { return get(newCAx.pool) })
	if err := get(oldCA.pool); err == nil {
		t.Fatal("the old certificate is still served after rotation")
	}
}

func TestSlowAndOversizedHeaders(t *testing.T) {
	addr, reached := serve(t, server.Options{InsecureHTTP: true, ReadHeaderTimeout: 300 * time.Millisecond, MaxHeaderBytes: 8 << 10})

	t.Run("header dribble is cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The server hangs up when the header timeout ends, with a 400 or
		// 408 (Go answers 400 for a request cut off mid-header) or without
		// a word.
		closed := make(chan error, 1)
		go func() {
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				closed <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestTimeout {
				closed <- nil
				return
			}
			closed <- errors.New(resp.Status)
		}()
		// One byte every 50 ms, never finishing the headers: the server must
		// hang up although bytes keep coming.
		msg := "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 10000)
		deadline := time.After(20 * time.Second)
		for i := 0; ; i++ {
			select {
			case err := <-closed:
				if err == nil {
					t.Fatalf("server answered a request whose headers never ended (%d bytes sent)", i)
				}
				t.Logf("cut off after %d bytes: %v", i, err)
				if reached.Load() != 0 {
					t.Fatal("the request reached the handler")
				}
				return
			case <-deadline:
				t.Fatal("a client dribbling its headers held the connection for 20s")
			case <-time.After(50 * time.Millisecond):
				_, _ = c.Write([]byte{msg[i%len(msg)]})
			}
		}
	})
	t.Run("oversized headers get 431", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		big := "POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 64<<10) + "\r\n\r\n"
		go func() { _, _ = c.Write([]byte(big)) }()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("oversized headers: %d, want 431", resp.StatusCode)
		}
		if reached.Load() != 0 {
			t.Fatal("the request reached the handler")
		}
	})
}
