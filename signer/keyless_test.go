package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// testCA is a certificate authority in the shape of Fulcio: leaf
// certificates for code signing, the OIDC subject as a SAN and the issuer
// in Fulcio's extension. Real Fulcio is unreachable here; verification
// runs cosign's own certificate checks against it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var oidFulcioIssuer = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test fulcio root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cryptoutils.MarshalCertificateToPEM(c)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key, pem: p}
}

// issue returns a signer holding a fresh key certified for email by issuer.
func (ca *testCA) issue(t *testing.T, email, issuer string, notAfter time.Time) *signingIdentity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute), NotAfter: notAfter,
		EmailAddresses:  []string{email},
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		ExtraExtensions: []pkix.Extension{{Id: oidFulcioIssuer, Value: []byte(issuer)}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := cryptoutils.MarshalCertificateToPEM(c)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &signingIdentity{sv: sv, cert: certPEM, chain: ca.pem, source: "test keyless " + email}
}

func TestKeylessVerificationWithFileRoot(t *testing.T) {
	r := newRig(t)
	dir := t.TempDir()
	ca, otherCA := newTestCA(t), newTestCA(t)
	if err := os.WriteFile(filepath.Join(dir, "fulcio.pem"), ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	const issuer = "https://token.actions.githubusercontent.com"
	policy := "identities:\n  - name: ci\n    keyless: {issuer: " + issuer + ", subjectRegExp: '^ci@acme\\.example$'}\n" +
		"trustedRoot:\n  fulcioCerts: [fulcio.pem]\n"
	pol := writePolicy(t, dir, policy)
	v, err := NewVerifier(pol, r.reg)
	if err != nil {
		t.Fatal(err)
	}
	cases := keylessCases(t, ca, otherCA, issuer)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := r.pushImage(r.uniqueRepo(), "v1")
			s := r.signer(nil)
			s.id = tc.id
			if _, err := s.Sign(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verified != tc.wantOK {
				t.Fatalf("verified=%v (%s %s), want %v", res.Verified, res.Reason, res.Message, tc.wantOK)
			}
			if !tc.wantOK && res.Reason != UntrustedKey {
				t.Fatalf("reason %s, want %s", res.Reason, UntrustedKey)
			}
		})
	}
}

// keylessCase is a signing identity and whether a policy trusting ca for
// ci@acme.example from issuer accepts it.
type keylessCase struct {
	name   string
	id     *signingIdentity
	wantOK bool
}

// keylessCases are the identities the keyless tests sign with, in both
// signature formats: the one the policy names, and each way to miss it.
func keylessCases(t *testing.T, ca, otherCA *testCA, issuer string) []keylessCase {
	hour := time.Now().Add(time.Hour)
	return []keylessCase{
		{"trusted CA, matching identity", ca.issue(t, "ci@acme.example", issuer, hour), true},
		{"trusted CA, other subject", ca.issue(t, "mallory@acme.example", issuer, hour), false},
		{"trusted CA, other issuer", ca.issue(t, "ci@acme.example", "https://accounts.example", hour), false},
		{"untrusted CA, matching identity", otherCA.issue(t, "ci@acme.example", issuer, hour), false},
		{"expired certificate without a log timestamp", ca.issue(t, "ci@acme.example", issuer, time.Now().Add(-time.Second)), false},
	}
}
