package signer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sigstore/cosign/v2/cmd/cosign/cli/fulcio"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/providers"
	_ "github.com/sigstore/cosign/v2/pkg/providers/github" // GitHub Actions OIDC tokens for keyless signing
	"github.com/sigstore/sigstore/pkg/signature"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/files"
	goci "github.com/gantry-dev/gantry/internal/oci"
)

// maxSecretSize bounds key, password and token files.
const maxSecretSize = 64 << 10

// Option configures New.
type Option func(*newOptions)

type newOptions struct {
	log    *slog.Logger
	getenv func(string) string
	now    func() time.Time
}

// WithLogger sets the logger (key material never reaches it).
func WithLogger(l *slog.Logger) Option { return func(o *newOptions) { o.log = l } }

// WithGetenv replaces os.Getenv for the key and password variables.
func WithGetenv(f func(string) string) Option { return func(o *newOptions) { o.getenv = f } }

// WithSignClock sets the clock for attestation timestamps.
func WithSignClock(now func() time.Time) Option { return func(o *newOptions) { o.now = now } }

// ErrSigningDisabled is returned by New when signer.keySource is none.
var ErrSigningDisabled = errors.New("signing is disabled: set signer.keySource (file, env, kubernetes or keyless)")

// New loads the signing identity the configuration names. Errors say which
// source failed (file path, variable or Secret name), never its content.
func New(ctx context.Context, cfg config.Signer, reg *goci.Client, opts ...Option) (*Signer, error) {
	o := &newOptions{log: slog.New(slog.NewTextHandler(io.Discard, nil)), getenv: os.Getenv, now: time.Now}
	for _, f := range opts {
		f(o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, errors.New("signer: New needs a registry client")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	id, err := loadIdentity(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	s := &Signer{id: id, reg: reg, log: o.log, now: o.now, format: cfg.Format, timeout: cfg.Timeout}
	if cfg.UploadsToTlog() {
		s.rekorURL = cfg.RekorURL
		tl, err := newRekor(cfg.RekorURL, cfg.Timeout)
		if err != nil {
			return nil, fmt.Errorf("signer.rekorURL: %w", err)
		}
		s.tl = tl
	}
	return s, nil
}

func loadIdentity(ctx context.Context, cfg config.Signer, o *newOptions) (*signingIdentity, error) {
	switch cfg.KeySource {
	case "none", "":
		return nil, ErrSigningDisabled
	case "file":
		src := "key file " + cfg.KeyFile
		key, err := files.ReadBounded(cfg.KeyFile, maxSecretSize)
		if err != nil {
			return nil, fmt.Errorf("signer: %s: %w", src, sanitize(err))
		}
		return decryptKey(key, src, cfg, o, nil)
	case "env":
		src := "environment variable " + cfg.KeyEnv
		key := o.getenv(cfg.KeyEnv)
		if key == "" {
			return nil, fmt.Errorf("signer: %s is empty or unset", src)
		}
		return decryptKey([]byte(key), src, cfg, o, nil)
	case "kubernetes":
		src := "Kubernetes Secret " + cfg.KeySecret
		data, err := readSecret(ctx, cfg.Kubeconfig, cfg.KeySecret)
		if err != nil {
			return nil, fmt.Errorf("signer: %s: %w", src, err)
		}
		if len(data["cosign.key"]) == 0 {
			return nil, fmt.Errorf("signer: %s has no cosign.key entry (create it with `cosign generate-key-pair k8s://%s`)", src, cfg.KeySecret)
		}
		return decryptKey(data["cosign.key"], src, cfg, o, data["cosign.password"])
	case "keyless":
		return keylessIdentity(ctx, cfg, o)
	}
	return nil, fmt.Errorf("signer.keySource %q is not supported", cfg.KeySource)
}

// decryptKey opens a cosign encrypted private key. secretPassword is the
// fallback when neither passwordFile nor passwordEnv supplies one.
func decryptKey(key []byte, src string, cfg config.Signer, o *newOptions, secretPassword []byte) (*signingIdentity, error) {
	pass, err := password(cfg, o, secretPassword)
	if err != nil {
		return nil, fmt.Errorf("signer: password for %s: %w", src, err)
	}
	sv, err := cosign.LoadPrivateKey(key, pass, nil)
	if err != nil {
		// cosign's messages name the failure (wrong password, not PEM)
		// without echoing the key.
		return nil, fmt.Errorf("signer: %s: cannot load the cosign private key (%s); check the key and its password", src, keyErrorKind(err))
	}
	return &signingIdentity{sv: sv, source: src}, nil
}

func keyErrorKind(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "decrypt"):
		return "wrong password or damaged key"
	case strings.Contains(msg, "pem"):
		return "not a PEM block"
	case strings.Contains(msg, "unsupported pem type"):
		return "not a cosign private key"
	}
	return "unreadable key"
}

func password(cfg config.Signer, o *newOptions, fallback []byte) ([]byte, error) {
	if cfg.PasswordFile != "" {
		b, err := files.ReadBounded(cfg.PasswordFile, maxSecretSize)
		if err != nil {
			return nil, fmt.Errorf("password file %s: %w", cfg.PasswordFile, sanitize(err))
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	if cfg.PasswordEnv != "" {
		if v, ok := lookup(o, cfg.PasswordEnv); ok {
			return []byte(v), nil
		}
	}
	return fallback, nil
}

func lookup(o *newOptions, name string) (string, bool) {
	v := o.getenv(name)
	return v, v != ""
}

// sanitize keeps the kind of a file error (not found, permission) and
// drops anything else.
func sanitize(err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errors.New("file does not exist")
	case errors.Is(err, os.ErrPermission):
		return errors.New("permission denied")
	}
	return err
}

// readSecret reads a Secret with client-go.
func readSecret(ctx context.Context, kubeconfig, ref string) (map[string][]byte, error) {
	ns, name, _ := strings.Cut(ref, "/")
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return sec.Data, nil
}

// keylessIdentity makes an ephemeral key and has Fulcio certify it for the
// OIDC identity in the token.
func keylessIdentity(ctx context.Context, cfg config.Signer, o *newOptions) (*signingIdentity, error) {
	var token string
	switch {
	case cfg.OIDCTokenFile != "":
		b, err := files.ReadBounded(cfg.OIDCTokenFile, maxSecretSize)
		if err != nil {
			return nil, fmt.Errorf("signer: OIDC token file %s: %w", cfg.OIDCTokenFile, sanitize(err))
		}
		token = strings.TrimSpace(string(b))
	case providers.Enabled(ctx):
		t, err := providers.Provide(ctx, "sigstore")
		if err != nil {
			return nil, fmt.Errorf("signer: fetching the CI OIDC token: %w", err)
		}
		token = t
	default:
		return nil, errors.New("signer: keyless signing needs an identity token: set signer.oidcTokenFile, or run in GitHub Actions with `permissions: id-token: write`")
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	fc, err := fulcio.NewClient(cfg.FulcioURL)
	if err != nil {
		return nil, fmt.Errorf("signer.fulcioURL: %w", err)
	}
	resp, err := fulcio.GetCert(ctx, sv, token, "token", cfg.OIDCIssuer, cfg.OIDCClientID, "", "", fc)
	if err != nil {
		return nil, fmt.Errorf("signer: Fulcio %s did not issue a certificate: %w", cfg.FulcioURL, err)
	}
	return &signingIdentity{sv: sv, cert: resp.CertPEM, chain: resp.ChainPEM, source: "keyless (Fulcio " + cfg.FulcioURL + ")"}, nil
}

// NewWithSignerVerifier builds a Signer around a key already in memory
// (tests, KMS-backed signers).
func NewWithSignerVerifier(sv signature.SignerVerifier, source string, reg *goci.Client, opts ...Option) *Signer {
	o := &newOptions{log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}
	for _, f := range opts {
		f(o)
	}
	return &Signer{id: &signingIdentity{sv: sv, source: source}, reg: reg, log: o.log, now: o.now}
}
