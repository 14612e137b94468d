package signer

import (
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	goci "github.com/gantry-dev/gantry/internal/oci"
)

// pullers keeps go-containerregistry Pullers (one per registry) so that
// repeated reads of the same repository reuse its connection and token,
// and a registry whose scheme and auth are declared is read without a
// ping (see oci.Client.Declared). A failed handshake is not cached.
type pullers struct{ ps *goci.Pullers }

func newPullers(reg *goci.Client) *pullers { return &pullers{ps: reg.NewPullers()} }

// get returns the puller to use for repo.
func (c *pullers) get(repo name.Repository) (*remote.Puller, error) { return c.ps.Get(repo) }
