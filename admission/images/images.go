// Package images answers the two registry questions admission asks about an
// image: which digest a tag points to, and which user the image's own
// config runs as. Answers for a digest never change, so they are cached by
// digest; concurrent questions about one digest make one registry round
// trip.
package images

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/util/cache"

	"github.com/gantry-dev/gantry/internal/oci"
)

// maxPlatforms bounds how many images of one index are read.
const maxPlatforms = 16

// User is what an image's config says about the user it runs as.
type User struct {
	// Raw is the config's User field as written ("" means root).
	Raw string
	// Root is true when the image runs as UID 0: no user, "0", "root",
	// or either with a group ("0:0", "root:wheel").
	Root bool
	// Numeric is true when the user part is a number, which is what the
	// kubelet needs to prove runAsNonRoot.
	Numeric bool
	// Platform names the image of an index this came from ("" for a
	// single-platform image).
	Platform string
}

// ParseUser classifies an image config User value ("user" or
// "user:group"; only the user part decides). It does not trim: container
// runtimes take " 1000" as a user name to look up in the image's
// /etc/passwd, not as UID 1000, so a value with spaces is neither numeric
// nor proven non-root.
func ParseUser(s string) User {
	u := User{Raw: s}
	userPart, _, _ := strings.Cut(s, ":")
	switch {
	case userPart == "" || userPart == "root":
		u.Root, u.Numeric = true, userPart == ""
	default:
		if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
			u.Numeric = true
			u.Root = n == 0
		}
	}
	return u
}

// Inspector reads image metadata through the shared registry client.
type Inspector struct {
	reg     *oci.Client
	users   *cache.LRUExpireCache
	tags    *cache.LRUExpireCache
	tagTTL  time.Duration
	group   singleflight.Group
	calls   atomic.Int64
	userTTL time.Duration

	// pullers keep one authenticated transport per repository, so a new
	// digest of a known repository costs two requests (manifest, config)
	// rather than a registry ping and token exchange as well; a registry
	// whose scheme and auth are declared is not pinged at all (see
	// oci.Client.Declared).
	pullers *oci.Pullers
}

// Options tune an Inspector.
type Options struct {
	// MaxEntries bounds each cache.
	MaxEntries int
	// TagTTL is how long a tag → digest answer is reused. Tags move, so
	// keep it short.
	TagTTL time.Duration
}

// New returns an Inspector.
func New(reg *oci.Client, o Options) *Inspector {
	if o.MaxEntries < 1 {
		o.MaxEntries = 10000
	}
	return &Inspector{
		reg:     reg,
		pullers: reg.NewPullers(),
		users:   cache.NewLRUExpireCache(o.MaxEntries),
		tags:    cache.NewLRUExpireCache(o.MaxEntries),
		tagTTL:  o.TagTTL,
		userTTL: 24 * time.Hour, // content by digest is immutable; the TTL only ages out cold entries
	}
}

// pullerFor returns the puller for repo.
func (i *Inspector) pullerFor(repo name.Repository) (*remote.Puller, error) {
	return i.pullers.Get(repo)
}

// RegistryCalls is the number of registry round trips made so far.
func (i *Inspector) RegistryCalls() int64 { return i.calls.Load() }

// Resolve returns the digest a reference names: itself when it is pinned,
// otherwise the digest its tag points to now.
func (i *Inspector) Resolve(ctx context.Context, ref name.Reference) (name.Digest, error) {
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	key := ref.Name()
	if v, ok := i.tags.Get(key); ok {
		return v.(name.Digest), nil
	}
	v, err := i.do(ctx, "tag:"+key, func(ctx context.Context) (any, error) {
		// A flight that ended between our cache miss and this flight's
		// start has stored the answer: use it rather than ask again.
		if v, ok := i.tags.Get(key); ok {
			return v, nil
		}
		i.calls.Add(1)
		p, err := i.pullerFor(ref.Context())
		if err != nil {
			return nil, err
		}
		desc, err := p.Head(ctx, ref)
		if err != nil {
			return nil, err
		}
		d := ref.Context().Digest(desc.Digest.String())
		if i.tagTTL > 0 {
			i.tags.Add(key, d, i.tagTTL)
		}
		return d, nil
	})
	if err != nil {
		return name.Digest{}, fmt.Errorf("resolve tag %s: %w", ref, err)
	}
	return v.(name.Digest), nil
}

// Users returns the user of every image behind a digest that a Linux node
// may run (one for a plain image; for an index, one per linux entry and
// per entry without a platform). A nested index is an error.
func (i *Inspector) Users(ctx context.Context, d name.Digest) ([]User, error) {
	key := d.DigestStr() + "@" + d.Context().Name()
	if v, ok := i.users.Get(key); ok {
		return v.([]User), nil
	}
	v, err := i.do(ctx, "user:"+key, func(ctx context.Context) (any, error) {
		if v, ok := i.users.Get(key); ok { // see Resolve
			return v, nil
		}
		u, err := i.fetchUsers(ctx, d)
		if err == nil {
			// Stored inside the flight, so no caller can miss both.
			i.users.Add(key, u, i.userTTL)
		}
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("read image config of %s: %w", d, err)
	}
	return v.([]User), nil
}

func (i *Inspector) fetchUsers(ctx context.Context, d name.Digest) ([]User, error) {
	i.calls.Add(1)
	p, err := i.pullerFor(d.Context())
	if err != nil {
		return nil, err
	}
	desc, err := p.Get(ctx, d)
	if err != nil {
		return nil, err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		var out []User
		for _, mf := range m.Manifests {
			if !linuxOrUnset(mf.Platform) {
				continue // attestation manifests ("unknown/unknown") and other OSes
			}
			if mf.MediaType.IsIndex() {
				// Runtimes descend into nested indexes; one level is all
				// image builds produce, so a deeper one is refused rather
				// than followed.
				return nil, fmt.Errorf("index entry %s is an index inside an index: push a single-level index (one image per platform)", mf.Digest)
			}
			if !mf.MediaType.IsImage() {
				continue // artifacts (SBOMs, signatures): no runtime runs them
			}
			if len(out) == maxPlatforms {
				return nil, fmt.Errorf("index has more than %d linux images", maxPlatforms)
			}
			i.calls.Add(2)
			img, err := idx.Image(mf.Digest)
			if err != nil {
				return nil, err
			}
			u, err := userOf(img)
			if err != nil {
				return nil, err
			}
			if mf.Platform == nil || mf.Platform.OS == "" {
				// containerd matches an entry without a platform on every
				// node, so its user counts like any linux image's.
				u.Platform = "entry " + mf.Digest.String() + " without a platform"
			} else {
				u.Platform = mf.Platform.String()
			}
			out = append(out, u)
		}
		if len(out) == 0 {
			return nil, errors.New("index holds no linux image")
		}
		return out, nil
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("not an image (media type %s)", desc.MediaType)
	}
	i.calls.Add(1)
	img, err := desc.Image()
	if err != nil {
		return nil, err
	}
	u, err := userOf(img)
	if err != nil {
		return nil, err
	}
	return []User{u}, nil
}

// linuxOrUnset reports whether a runtime on a Linux node may pick an index
// entry with platform p: no platform, no OS, or linux (runtimes compare
// the OS lower-cased).
func linuxOrUnset(p *v1.Platform) bool {
	return p == nil || p.OS == "" || strings.EqualFold(p.OS, "linux")
}

func userOf(img v1.Image) (User, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return User{}, err
	}
	return ParseUser(cf.Config.User), nil
}

// do runs f once per key at a time. f runs on a context detached from the
// first caller's cancellation (so one caller giving up does not fail the
// others) but bounded by the registry client's timeout; every caller still
// stops waiting at its own deadline.
func (i *Inspector) do(ctx context.Context, key string, f func(context.Context) (any, error)) (any, error) {
	ch := i.group.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), i.reg.Timeout())
		defer cancel()
		return f(fctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
