package signer

import (
	"context"
	"sync"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	goci "github.com/gantry-dev/gantry/internal/oci"
)

// maxPullerRepos bounds how many repositories one puller keeps connection
// and token state for; past it, a fresh puller starts over.
const maxPullerRepos = 1024

// pullers keeps one go-containerregistry Puller so that repeated reads of
// the same repository reuse its registry ping and token (otherwise every
// request pays a ping, and for plain-HTTP registries a failed TLS attempt).
// A failed handshake is not cached by the Puller.
type pullers struct {
	reg   *goci.Client
	mu    sync.Mutex
	p     *remote.Puller
	repos map[string]struct{}
}

func newPullers(reg *goci.Client) *pullers { return &pullers{reg: reg} }

// get returns the puller to use for repo.
func (c *pullers) get(repo string) (*remote.Puller, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, seen := c.repos[repo]; !seen && len(c.repos) >= maxPullerRepos {
		c.p = nil
	}
	if c.p == nil {
		// The context given here is only a default: every call passes its own.
		p, err := remote.NewPuller(c.reg.RemoteOptions(context.Background())...)
		if err != nil {
			return nil, err
		}
		c.p, c.repos = p, map[string]struct{}{}
	}
	c.repos[repo] = struct{}{}
	return c.p, nil
}
