package signer

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

var keylessProvenance = []byte(`{"buildDefinition":{"buildType":"https://gantry.dev/build/v1","externalParameters":{"source":{"repository":"https://github.com/acme/fn","ref":"refs/heads/main"}}},"runDetails":{"builder":{"id":"https://gantry.dev/builder"}}}`)

// issueFor certifies pub for email by issuer, in Fulcio's shape, and
// returns the certificate as PEM.
func (ca *testCA) issueFor(t *testing.T, pub crypto.PublicKey, email, issuer string, notAfter time.Time) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: notAfter,
		EmailAddresses:  []string{email},
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: oidFulcioIssuer, Value: []byte(issuer)}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	p, _ := cryptoutils.MarshalCertificateToPEM(c)
	return p
}

// trustedRootJSON is a Sigstore trusted root holding only ca, for the
// cosign CLI's --trusted-root.
func (ca *testCA) trustedRootJSON(t *testing.T) []byte {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{Root: ca.cert, ValidityPeriodStart: ca.cert.NotBefore}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeylessBundles: keyless signatures in the bundle format, against
// the local CA (Fulcio's certificate shape; no Fulcio, Rekor or CT log is
// reachable here, so certificates are checked at the current time). Gantry
// signs with a certificate, Gantry and cosign v3 verify; cosign v3 signs
// with a certificate, Gantry verifies; other subject, issuer, CA and an
// expired certificate are refused.
func TestKeylessBundles(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	dir := t.TempDir()
	ca, otherCA := newTestCA(t), newTestCA(t)
	if err := os.WriteFile(filepath.Join(dir, "fulcio.pem"), ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	rootPath := filepath.Join(dir, "trusted_root.json")
	if err := os.WriteFile(rootPath, ca.trustedRootJSON(t), 0o600); err != nil {
		t.Fatal(err)
	}
	const issuer = "https://token.actions.githubusercontent.com"
	pol := writePolicy(t, dir, "identities:\n  - name: ci\n    keyless: {issuer: "+issuer+", subjectRegExp: '^ci@acme\\.example$'}\n"+
		"trustedRoot:\n  fulcioCerts: [fulcio.pem]\n")
	v, err := NewVerifier(pol, r.reg)
	if err != nil {
		t.Fatal(err)
	}
	withProv, err := NewVerifier(writePolicy(t, dir, "identities:\n  - name: ci\n    keyless: {issuer: "+issuer+", subjectRegExp: '^ci@acme\\.example$'}\n"+
		"trustedRoot:\n  fulcioCerts: [fulcio.pem]\nattestations:\n  - {type: slsaprovenance1, repo: https://github.com/acme/fn}\n"), r.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hour := time.Now().Add(time.Hour)
	const password = "keyless"
	cli := newCosign3CLI(t, r, password)

	cases := keylessCases(t, ca, otherCA, issuer)
	for _, tc := range cases {
		t.Run("gantry signs: "+tc.name, func(t *testing.T) {
			d := r.pushImage(r.uniqueRepo(), "v1")
			s := r.signer(nil)
			s.id, s.format = tc.id, FormatBundle
			if _, err := s.Sign(ctx, d); err != nil {
				t.Fatal(err)
			}
			requireBundleLayout(t, r, d)
			res, err := v.Verify(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verified != tc.wantOK || (!tc.wantOK && res.Reason != UntrustedKey) {
				t.Fatalf("got verified=%v %s (%s), want %v", res.Verified, res.Reason, res.Message, tc.wantOK)
			}
			if tc.wantOK {
				// Attestations too: Gantry attests keyless, Gantry and cosign v3 verify.
				if _, err := s.Attest(ctx, d, "slsaprovenance1", keylessProvenance); err != nil {
					t.Fatal(err)
				}
				if res, err := withProv.Verify(ctx, d); err != nil || !res.Verified {
					t.Fatalf("attested: %+v %v", res, err)
				}
				if out, err := cli.run("verify-attestation", "--type", "slsaprovenance1", "--certificate-identity-regexp", `^ci@acme\.example$`, "--certificate-oidc-issuer", issuer,
					"--trusted-root", rootPath, "--insecure-ignore-tlog", "--insecure-ignore-sct", "--allow-http-registry", d.String()); err != nil {
					t.Fatalf("cosign v3 verify-attestation: %v\n%s", err, out)
				}
			}
			out, err := cli.run("verify", "--certificate-identity-regexp", `^ci@acme\.example$`, "--certificate-oidc-issuer", issuer,
				"--trusted-root", rootPath, "--insecure-ignore-tlog", "--insecure-ignore-sct", "--allow-http-registry", d.String())
			if (err == nil) != tc.wantOK {
				t.Fatalf("cosign v3 verify: err=%v, want ok=%v\n%s", err, tc.wantOK, out)
			}
		})
	}

	t.Run("cosign v3 signs with a certificate from the CA", func(t *testing.T) {
		_, pubPEM, keyPath, _ := cosignKeyPair(t, t.TempDir(), password)
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			email  string
			wantOK bool
		}{{"ci@acme.example", true}, {"mallory@acme.example", false}} {
			certPath := filepath.Join(t.TempDir(), "cert.pem")
			if err := os.WriteFile(certPath, ca.issueFor(t, pub, tc.email, issuer, hour), 0o600); err != nil {
				t.Fatal(err)
			}
			d := r.pushImage(r.uniqueRepo(), "v1")
			if out, err := cli.run("sign", "--key", keyPath, "--certificate", certPath, "--tlog-upload=false", "--use-signing-config=false",
				"-y", "--allow-http-registry", d.String()); err != nil {
				t.Fatalf("cosign v3 sign: %v\n%s", err, out)
			}
			requireBundleLayout(t, r, d)
			res, err := v.Verify(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verified != tc.wantOK {
				t.Fatalf("%s: %+v", tc.email, res)
			}
		}
	})
}
