package builder

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/testenv"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, as PEM files in dir.
func pki(t *testing.T, dir string) (ca, srvCert, srvKey, cliCert, cliKey string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gantry test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(k)
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kb)
	}
	ca = write("ca.crt", "CERTIFICATE", caDER)
	srvCert, srvKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startTLSDaemon starts a second, private buildkitd (the test
// environment's binary) listening on tcp://127.0.0.1 with mutual TLS.
func startTLSDaemon(t *testing.T, env *testenv.Env) (addr string, tls TLS) {
	t.Helper()
	bin := filepath.Join(filepath.Dir(env.Buildctl), "buildkitd")
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Fatalf("runc (installed by hack/testenv): %v", err)
	}
	dir := t.TempDir()
	ca, sc, sk, cc, ck := pki(t, dir)
	// The daemon's state lives outside t.TempDir: it may hold mounts for a
	// moment after the daemon exits, and is removed best-effort.
	root, err := os.MkdirTemp("", "gantry-test-buildkitd-")
	if err != nil {
		t.Fatal(err)
	}
	addr = fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`root = %q
[grpc]
  address = [%q]
  [grpc.tls]
    cert = %q
    key = %q
    ca = %q
[worker.oci]
  enabled = true
  snapshotter = "overlayfs"
  binary = %q
  networkMode = "host"
[worker.containerd]
  enabled = false
[registry.%q]
  http = true
  insecure = true
`, root, addr, sc, sk, ca, runc, env.Registry)
	cfgPath := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "buildkitd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		_ = os.RemoveAll(root)
	})
	tls = TLS{CACert: ca, Cert: cc, Key: ck}
	pool, err := NewPool([]string{addr}, tls, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, _, err := pool.acquire(context.Background()); err == nil {
			return addr, tls
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("buildkitd on %s not ready: %v\n%s", addr, err, log)
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("buildkitd exited:\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestPoolOfTwoDaemonsOneWithMutualTLS runs builds on a pool of the test
// environment's daemon (unix socket) and a private one on tcp with mutual
// TLS: concurrent builds spread over both, and a client without a
// certificate is refused by the TLS daemon.
func TestPoolOfTwoDaemonsOneWithMutualTLS(t *testing.T) {
	env := testenv.Require(t)
	tcpAddr, tls := startTLSDaemon(t, env)

	t.Run("tls daemon alone", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.Addrs = []string{tcpAddr}; o.TLS = tls })
		dir := writeContext(t, map[string]string{"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN echo over tls > /x\nUSER 1000\n"})
		res, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: f.repo(t), Push: true,
			BuildArgs: map[string]string{"BASE": env.BaseImage}}, Progress{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Daemon != tcpAddr || res.ProvenanceDigest == "" {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("no client certificate is refused", func(t *testing.T) {
		f := newFixture(t, func(o *Options) {
			o.Addrs = []string{tcpAddr}
			o.TLS = TLS{CACert: tls.CACert}
			o.DialTimeout = 3 * time.Second
		})
		dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n"})
		_, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: f.repo(t)}, Progress{})
		var ue *UnreachableError
		if !errors.As(err, &ue) || ue.Tried[0].Addr != tcpAddr {
			t.Fatalf("want UnreachableError naming %s, got %v", tcpAddr, err)
		}
	})
	t.Run("concurrent builds spread over the pool", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.Addrs = []string{env.BuildkitAddr, tcpAddr}; o.TLS = tls })
		var wg sync.WaitGroup
		daemons := make([]string, 2)
		errs := make([]error, 2)
		for i := range 2 {
			dir := writeContext(t, map[string]string{"Dockerfile": fmt.Sprintf(
				"ARG BASE\nFROM ${BASE}\nRUN echo %d-%d > /id && sleep 2\nUSER 1000\n", i, time.Now().UnixNano())})
			repo := f.repo(t)
			wg.Go(func() {
				res, err := f.b.Build(context.Background(), Request{ContextDir: dir, Image: repo, Push: true,
					BuildArgs: map[string]string{"BASE": env.BaseImage}}, Progress{})
				errs[i] = err
				if res != nil {
					daemons[i] = res.Daemon
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		slices.Sort(daemons)
		want := []string{env.BuildkitAddr, tcpAddr}
		slices.Sort(want)
		if !slices.Equal(daemons, want) {
			t.Errorf("builds ran on %v, want one on each of %v", daemons, want)
		}
	})
}
