package pipelines

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/audit"
)

// A run's origin (who pushed what, where from, when it was received) is
// sealed by the receiver with an Ed25519 key that only the receiver holds.
// NATS access alone cannot forge a seal, so a worker executes only runs
// whose record carries a valid seal over exactly the origin fields it is
// about to act on; everything a worker writes itself (state, stages,
// outputs, lease) is outside the seal.

// Seal is the receiver's signature over a run's origin.
type Seal struct {
	// KeyID names the public key that verifies Sig (hex of the first 8
	// bytes of its SHA-256), so keys can be rotated.
	KeyID string `json:"keyId"`
	// Sig is the Ed25519 signature of sealMessage(run).
	Sig []byte `json:"sig"`
}

// sealVersion is the domain separator and version of the sealed encoding.
const sealVersion = "gantry-run-origin-seal/v1"

// sealMessage is the canonical byte string a seal signs: the version and
// every origin field, each length-prefixed (so no two different origins
// encode alike).
func sealMessage(r *Run) []byte {
	fields := []string{
		r.ID, r.Repo, r.CloneURL, r.Ref, r.Commit, r.DeliveryID,
		r.CreatedAt.UTC().Format(time.RFC3339Nano), r.Pusher, r.Title,
	}
	b := make([]byte, 0, 256)
	b = binary.AppendUvarint(b, uint64(len(sealVersion)))
	b = append(b, sealVersion...)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// KeyID returns the id under which pub verifies seals.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// Sealer seals the runs a receiver accepts.
type Sealer struct {
	key ed25519.PrivateKey
	id  string
}

// NewSealer returns a sealer signing with key.
func NewSealer(key ed25519.PrivateKey) *Sealer {
	return &Sealer{key: key, id: KeyID(key.Public().(ed25519.PublicKey))}
}

// Public is the key workers verify this sealer's seals with.
func (s *Sealer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

func (s *Sealer) seal(r *Run) {
	r.Seal = &Seal{KeyID: s.id, Sig: ed25519.Sign(s.key, sealMessage(r))}
}

// ParsePrivateKey reads an Ed25519 private key in PEM (PKCS #8, as
// `openssl genpkey -algorithm ed25519` writes it).
func ParsePrivateKey(pemBytes []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block (want PKCS #8 Ed25519: openssl genpkey -algorithm ed25519)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS #8 private key")
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("not an Ed25519 key")
	}
	return ek, nil
}

// ParsePublicKey reads an Ed25519 public key in PEM (PKIX, as `openssl
// pkey -pubout` writes it).
func ParsePublicKey(pemBytes []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("not a PEM \"PUBLIC KEY\" block (want PKIX Ed25519: openssl pkey -in seal.key -pubout)")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("not a PKIX public key")
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("not an Ed25519 key")
	}
	return ek, nil
}

// MarshalPrivateKey and MarshalPublicKey encode keys as ParsePrivateKey
// and ParsePublicKey read them.
func MarshalPrivateKey(k ed25519.PrivateKey) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(k) // cannot fail for ed25519
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// MarshalPublicKey: see MarshalPrivateKey.
func MarshalPublicKey(k ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(k) // cannot fail for ed25519
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// OriginPolicy is what a worker checks on every delivery before a stage
// sees the run: the seal, the allow-list and the clone URL.
type OriginPolicy struct {
	// Keys verify seals (several: rotation).
	Keys []ed25519.PublicKey
	// Allowed returns why repo's ref may not run ("" if it may): the
	// receiver's allow-list (webhooks.repos), re-checked by the worker.
	Allowed func(repo, ref string) string
	// GitHubHost is the host of the only clone URLs accepted:
	// https://<GitHubHost>/<owner>/<name>[.git], compared without regard
	// to case (github.com if empty).
	GitHubHost string
}

func (p *OriginPolicy) validate() error {
	if p == nil || len(p.Keys) == 0 {
		return errors.New("pipelines: workers need the receiver's seal public key (queue.sealPublicKeyFiles); they execute only sealed runs")
	}
	if p.Allowed == nil {
		return errors.New("pipelines: workers need the allow-list (webhooks.repos)")
	}
	for _, k := range p.Keys {
		if len(k) != ed25519.PublicKeySize {
			return errors.New("pipelines: a seal public key has the wrong size")
		}
	}
	return nil
}

// rejection is why a run record is not executed; reason is a metric
// label, detail the human explanation.
type rejection struct{ reason, detail string }

// check returns nil if r may be executed.
func (p *OriginPolicy) check(r *Run) *rejection {
	if r.Seal == nil {
		return &rejection{"unsealed", "the run record carries no receiver seal"}
	}
	var key ed25519.PublicKey
	for _, k := range p.Keys {
		if KeyID(k) == r.Seal.KeyID {
			key = k
			break
		}
	}
	if key == nil {
		return &rejection{"unknown_key", "the run is sealed with a key this worker does not trust (queue.sealPublicKeyFiles)"}
	}
	if !ed25519.Verify(key, sealMessage(r), r.Seal.Sig) {
		return &rejection{"bad_seal", "the run record does not match its seal (changed after the receiver accepted it)"}
	}
	if why := p.Allowed(r.Repo, r.Ref); why != "" {
		return &rejection{"not_allowed", why}
	}
	if err := CheckCloneURL(p.GitHubHost, r.Repo, r.CloneURL); err != nil {
		return &rejection{"clone_url", err.Error()}
	}
	return nil
}

// CheckCloneURL reports whether cloneURL is repo's own HTTPS URL on host:
// https://<host>/<owner>/<name> or the same with .git, compared without
// regard to case, with no credentials, port, query or fragment.
func CheckCloneURL(host, repo, cloneURL string) error {
	if host == "" {
		host = "github.com"
	}
	want := fmt.Sprintf("https://%s/%s", host, repo)
	u, err := url.Parse(cloneURL)
	if err != nil || u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
		u.Fragment != "" || u.Opaque != "" || u.Port() != "" || !strings.EqualFold(u.Host, host) {
		return fmt.Errorf("clone URL %q is not %s on the configured GitHub host (webhooks.githubHost)", trunc(cloneURL), want)
	}
	p := u.EscapedPath()
	p = strings.TrimSuffix(p, ".git")
	if !strings.EqualFold(p, "/"+repo) || strings.Count(repo, "/") != 1 {
		return fmt.Errorf("clone URL %q is not %s[.git]", trunc(cloneURL), want)
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// reject ends a run whose origin failed the worker's check: it is not
// executed, its record ends in state error with the reason, the record
// is dead-lettered, an audit record is written and the rejection counted.
func (q *Queue) reject(ctx context.Context, id string, r *Run, rej *rejection, rec *audit.Recorder) {
	q.metrics.rejected.WithLabelValues(rej.reason).Inc()
	q.log.Error("run rejected: not executed", "run", id, "reason", rej.reason, "detail", rej.detail)
	rec.Record(context.WithoutCancel(ctx), audit.Event{
		Action: ActionRunReject, Actor: "gantry", Target: id, Outcome: audit.OutcomeDenied,
		Reason: rej.detail,
		Details: map[string]string{
			"check": rej.reason, "repo": r.Repo, "ref": r.Ref, "commit": r.Commit, "cloneURL": r.CloneURL,
		},
	})
}

// ActionRunReject is the audit action of a run a worker refused to execute.
const ActionRunReject = "run.reject"

var errOriginChanged = errors.New("the run record's origin changed after the worker checked its seal")

// sameOrigin reports whether a and b agree on every sealed field and seal.
func sameOrigin(a, b *Run) bool {
	if a.Seal == nil || b.Seal == nil {
		return a.Seal == b.Seal && string(sealMessage(a)) == string(sealMessage(b))
	}
	return string(sealMessage(a)) == string(sealMessage(b)) && a.Seal.KeyID == b.Seal.KeyID && string(a.Seal.Sig) == string(b.Seal.Sig)
}
