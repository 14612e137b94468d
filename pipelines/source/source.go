// Package source checks out the exact commit a run is for, with go-git.
//
// A run names a commit SHA, never a branch: a branch can move between the
// push and the fetch, and building something other than the pushed commit
// would break the promise that an image comes from a known commit. The fetch
// is shallow at that SHA when the server allows it (GitHub does), and the
// checked-out HEAD is verified against the SHA.
package source

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Auth is how to reach a private repository. At most one of Token and
// SSHKeyFile is set. Values are read from files by the caller's config and
// never logged.
type Auth struct {
	// Token is an HTTPS token: a GitHub App installation token or a PAT.
	Token string
	// Username goes with Token; empty means x-access-token (GitHub's).
	Username string
	// SSHKeyFile is a deploy key (PEM/OpenSSH private key file).
	SSHKeyFile string
	// SSHKnownHosts is a known_hosts file; required with SSHKeyFile, so
	// that the server's host key is checked.
	SSHKnownHosts string
}

// Request names what to fetch.
type Request struct {
	// URL is https://…, ssh://… or git@host:path; file:// and plain paths
	// only when AllowLocal is set.
	URL string
	// Commit is the full 40-hex SHA.
	Commit string
	// Dir is an empty or absent directory to check out into.
	Dir  string
	Auth Auth
	// AllowLocal permits file:// URLs and local paths: for `gantry run
	// DIR` and tests, never for URLs from webhooks.
	AllowLocal bool
}

// Checkout is what was checked out.
type Checkout struct {
	Dir    string
	Commit string
	// Shallow says whether the server allowed a fetch of just that commit.
	Shallow bool
	// Subject is the commit message's first line, for notifications.
	Subject string
	Author  string
}

var sha1Hex = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Fetch checks out req.Commit from req.URL into req.Dir.
func Fetch(ctx context.Context, req Request) (*Checkout, error) {
	if !sha1Hex.MatchString(req.Commit) {
		return nil, fmt.Errorf("commit %q: want a full 40-character lower-case SHA", req.Commit)
	}
	repo, remote, auth, err := initRemote(req.URL, req.AllowLocal, req.Auth, req.Dir, 0o755, false)
	if err != nil {
		return nil, err
	}
	target := plumbing.ReferenceName("refs/gantry/commit")
	shallow := true
	err = remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []gitconfig.RefSpec{gitconfig.RefSpec(req.Commit + ":" + target.String())},
		Depth:    1,
		Auth:     auth,
		Tags:     git.NoTags,
	})
	if errors.Is(err, git.ErrExactSHA1NotSupported) {
		// The server will not serve a bare SHA: fetch its branches in
		// full and find the commit among them.
		shallow = false
		err = remote.FetchContext(ctx, &git.FetchOptions{
			RefSpecs: []gitconfig.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
			Auth:     auth,
			Tags:     git.NoTags,
		})
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetching %s from %s: %w", req.Commit, redact(req.URL), err)
	}
	hash := plumbing.NewHash(req.Commit)
	commit, err := repo.CommitObject(hash)
	if err != nil {
		return nil, fmt.Errorf("commit %s is not in %s (deleted branch, or force-pushed away?): %w", req.Commit, redact(req.URL), err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, err
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: hash, Force: true}); err != nil {
		return nil, fmt.Errorf("checking out %s: %w", req.Commit, err)
	}
	head, err := repo.Head()
	if err != nil {
		return nil, err
	}
	if head.Hash() != hash {
		return nil, fmt.Errorf("checked out %s, expected %s", head.Hash(), req.Commit)
	}
	subject, _, _ := strings.Cut(commit.Message, "\n")
	abs, _ := filepath.Abs(req.Dir)
	return &Checkout{Dir: abs, Commit: req.Commit, Shallow: shallow, Subject: subject, Author: commit.Author.Name}, nil
}

// checkURL parses the URL and refuses local transports unless allowed: a
// repository URL from a webhook payload must not read the server's disk.
func checkURL(raw string, allowLocal bool) (*transport.Endpoint, error) {
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: %w", redact(raw), err)
	}
	switch ep.Protocol {
	case "https", "ssh":
		return ep, nil
	case "http":
		return nil, fmt.Errorf("repository URL %s: plain http is refused; use https or ssh", redact(raw))
	case "file":
		if allowLocal {
			return ep, nil
		}
		return nil, fmt.Errorf("repository URL %s: local repositories are allowed only for `gantry run DIR`", redact(raw))
	default:
		return nil, fmt.Errorf("repository URL %s: unsupported protocol %q (https or ssh)", redact(raw), ep.Protocol)
	}
}

func authMethod(ep *transport.Endpoint, a Auth) (transport.AuthMethod, error) {
	switch {
	case a.Token != "" && a.SSHKeyFile != "":
		return nil, errors.New("repository auth: give a token or an SSH key, not both")
	case a.Token != "":
		if ep.Protocol != "https" {
			return nil, fmt.Errorf("repository auth: a token needs an https URL, not %s", ep.Protocol)
		}
		// GitHub takes installation tokens and PATs as the password of
		// any user name; x-access-token is what its docs use.
		user := a.Username
		if user == "" {
			user = "x-access-token"
		}
		return &githttp.BasicAuth{Username: user, Password: a.Token}, nil
	case a.SSHKeyFile != "":
		if ep.Protocol != "ssh" {
			return nil, fmt.Errorf("repository auth: an SSH key needs an ssh URL, not %s", ep.Protocol)
		}
		if a.SSHKnownHosts == "" {
			return nil, errors.New("repository auth: an SSH key needs a known_hosts file (the server's host key is always checked)")
		}
		keys, err := gitssh.NewPublicKeysFromFile(sshUser(ep), a.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("repository auth: SSH key file %s could not be read as a private key", a.SSHKeyFile)
		}
		cb, err := knownhosts.New(a.SSHKnownHosts)
		if err != nil {
			return nil, fmt.Errorf("repository auth: known_hosts %s: %w", a.SSHKnownHosts, err)
		}
		keys.HostKeyCallback = ssh.HostKeyCallback(cb)
		return keys, nil
	}
	return nil, nil
}

func sshUser(ep *transport.Endpoint) string {
	if ep.User != "" {
		return ep.User
	}
	return "git"
}

// redact drops credentials embedded in a URL before it goes into an error.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("redacted")
	return u.String()
}

// initRemote checks url, resolves its credentials and initialises an empty
// repository in dir with url as its origin, for Fetch (a worktree) and
// FetchHistory (bare).
func initRemote(url string, allowLocal bool, a Auth, dir string, perm os.FileMode, bare bool) (*git.Repository, *git.Remote, transport.AuthMethod, error) {
	endpoint, err := checkURL(url, allowLocal)
	if err != nil {
		return nil, nil, nil, err
	}
	auth, err := authMethod(endpoint, a)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return nil, nil, nil, err
	}
	repo, err := git.PlainInit(dir, bare)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("preparing %s: %w", dir, err)
	}
	remote, err := repo.CreateRemote(&gitconfig.RemoteConfig{Name: "origin", URLs: []string{url}})
	if err != nil {
		return nil, nil, nil, err
	}
	return repo, remote, auth, nil
}
