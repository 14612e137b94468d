//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gantry-dev/gantry/internal/files"
	"github.com/gantry-dev/gantry/pipelines"
	"github.com/gantry-dev/gantry/webhooks"
)

const sealKeyHelp = "generate a key pair with `openssl genpkey -algorithm ed25519 -out seal.key && openssl pkey -in seal.key -pubout -out seal.pub`"

// runSealer returns the receiver's sealer: queue.sealKeyFile, or else a
// key pair kept in queue.dataDir (seal.key 0600, seal.pub beside it for
// workers), created on first start so queued runs survive restarts.
func runSealer(a *app) (*pipelines.Sealer, error) {
	c := a.cfg.Queue
	path := c.SealKeyFile
	if path == "" {
		if c.DataDir == "" {
			return nil, fmt.Errorf("queue.sealKeyFile is required (no queue.dataDir to keep one in): %s", sealKeyHelp)
		}
		path = filepath.Join(c.DataDir, "seal.key")
		if err := createSealKey(path); err != nil {
			return nil, err
		}
	}
	b, err := files.ReadSecret(path, 16<<10)
	if err != nil {
		return nil, fmt.Errorf("queue.sealKeyFile: %w", err)
	}
	k, err := pipelines.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("queue.sealKeyFile %s: %w", path, err)
	}
	s := pipelines.NewSealer(k)
	a.log.Info("runs are sealed", "keyId", pipelines.KeyID(s.Public()), "key", path)
	return s, nil
}

// createSealKey writes a new key pair at path (and path's .pub) unless
// path exists.
func createSealKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("seal key: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil // another process made it first
	}
	if err != nil {
		return fmt.Errorf("seal key: %w", err)
	}
	if _, err := f.Write(pipelines.MarshalPrivateKey(priv)); err != nil {
		_ = f.Close()
		return fmt.Errorf("seal key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("seal key %s: %w", path, err)
	}
	pubPath := path[:len(path)-len(filepath.Ext(path))] + ".pub"
	if err := os.WriteFile(pubPath, pipelines.MarshalPublicKey(pub), 0o644); err != nil {
		return fmt.Errorf("seal public key: %w", err)
	}
	return nil
}

// originPolicy is what this process's workers check before executing a
// run: seals by queue.sealPublicKeyFiles (and by own, the key of a
// receiver in the same process), the allow-list webhooks.repos, and
// clone URLs on webhooks.githubHost.
func originPolicy(a *app, own *pipelines.Sealer) (*pipelines.OriginPolicy, error) {
	var keys []ed25519.PublicKey
	if own != nil {
		keys = append(keys, own.Public())
	}
	for _, p := range a.cfg.Queue.SealPublicKeyFiles {
		b, err := files.ReadBounded(p, 16<<10)
		if err != nil {
			return nil, fmt.Errorf("queue.sealPublicKeyFiles: %w", err)
		}
		k, err := pipelines.ParsePublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("queue.sealPublicKeyFiles %s: %w", p, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("workers execute only runs sealed by the receiver: set queue.sealPublicKeyFiles to the receiver's seal public key (seal.pub in gantry serve's queue.dataDir, or %s)", sealKeyHelp)
	}
	repos := make([]webhooks.Repo, 0, len(a.cfg.Webhooks.Repos))
	for _, r := range a.cfg.Webhooks.Repos {
		repos = append(repos, webhooks.Repo{Name: r.Name, Branches: r.Branches, Tags: r.Tags})
	}
	allow, err := webhooks.NewAllowList(repos)
	if err != nil {
		return nil, fmt.Errorf("webhooks.repos: %w", err)
	}
	return &pipelines.OriginPolicy{Keys: keys, Allowed: allow.Check, GitHubHost: a.cfg.Webhooks.GitHubHost}, nil
}
