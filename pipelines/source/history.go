package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Relation is how two commits of one repository are ordered by git
// ancestry.
type Relation int

// Relations of a commit to another.
const (
	// Unknown: neither was found in the other's history within the depth
	// fetched; the histories may still be related further back.
	Unknown Relation = iota
	// Same commit.
	Same
	// Descends: the commit has the other in its history (a fast-forward
	// of it: newer).
	Descends
	// Precedes: the commit is in the other's history (older).
	Precedes
	// Diverged: both histories were read to their roots and neither holds
	// the other (a history rewritten by a force push, or unrelated).
	Diverged
)

func (r Relation) String() string {
	return [...]string{"unknown", "same", "descends", "precedes", "diverged"}[r]
}

// DefaultHistoryDepth is how many commits back from each tip Relate reads
// when the caller gives no depth.
const DefaultHistoryDepth = 1000

// HistoryRequest names the repository whose history is read.
type HistoryRequest struct {
	URL  string
	Auth Auth
	// Dir is an empty or absent directory for the bare fetch.
	Dir        string
	AllowLocal bool
	// Depth bounds the commits fetched and walked back from each commit
	// (0: DefaultHistoryDepth).
	Depth int
}

// History is a bounded bare fetch of some commits, to order them by
// ancestry (is a push a fast-forward of what is deployed?) and to read
// files at them.
type History struct {
	repo  *git.Repository
	depth int
}

// FetchHistory fetches commits (full SHAs) with req.Depth commits of
// history each into a bare repository in req.Dir. Commits the server no
// longer has are an error naming them.
func FetchHistory(ctx context.Context, req HistoryRequest, commits ...string) (*History, error) {
	if req.Depth <= 0 {
		req.Depth = DefaultHistoryDepth
	}
	var specs []gitconfig.RefSpec
	seen := map[string]bool{}
	for _, c := range commits {
		if !sha1Hex.MatchString(c) {
			return nil, fmt.Errorf("commit %q: want a full 40-character lower-case SHA", c)
		}
		if !seen[c] {
			seen[c] = true
			specs = append(specs, gitconfig.RefSpec(c+":refs/gantry/history/"+c))
		}
	}
	if len(specs) == 0 {
		return nil, errors.New("history: no commit named")
	}
	repo, remote, auth, err := initRemote(req.URL, req.AllowLocal, req.Auth, req.Dir, 0o700, true)
	if err != nil {
		return nil, err
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Depth: req.Depth, Auth: auth, Tags: git.NoTags})
	if errors.Is(err, git.ErrExactSHA1NotSupported) {
		// As Fetch: the server will not serve bare SHAs; take its
		// branches (full history).
		err = remote.FetchContext(ctx, &git.FetchOptions{
			RefSpecs: []gitconfig.RefSpec{"+refs/heads/*:refs/remotes/origin/*"}, Auth: auth, Tags: git.NoTags,
		})
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetching the history of %d commit(s) from %s: %w", len(specs), redact(req.URL), err)
	}
	for c := range seen {
		if _, err := repo.CommitObject(plumbing.NewHash(c)); err != nil {
			return nil, fmt.Errorf("commit %s is not in %s (deleted branch, or force-pushed away?): %w", c, redact(req.URL), err)
		}
	}
	return &History{repo: repo, depth: req.Depth}, nil
}

// Relate orders commit a against commit b: Descends when b is in a's
// history, Precedes when a is in b's, Same, Diverged when both
// histories were read to their roots without meeting, and Unknown when
// the fetched depth ran out first.
func (h *History) Relate(a, b string) (Relation, error) {
	if a == b {
		return Same, nil
	}
	inA, completeA, err := h.reaches(a, b)
	if err != nil {
		return Unknown, err
	}
	if inA {
		return Descends, nil
	}
	inB, completeB, err := h.reaches(b, a)
	if err != nil {
		return Unknown, err
	}
	switch {
	case inB:
		return Precedes, nil
	case completeA && completeB:
		return Diverged, nil
	}
	return Unknown, nil
}

// reaches walks tip's history (breadth first, at most depth commits)
// looking for target. complete reports that the walk saw every ancestor
// (it reached root commits, never a shallow boundary or the bound).
func (h *History) reaches(tip, target string) (found, complete bool, err error) {
	want := plumbing.NewHash(target)
	start, err := h.repo.CommitObject(plumbing.NewHash(tip))
	if err != nil {
		return false, false, fmt.Errorf("history: commit %s: %w", tip, err)
	}
	queue := []*object.Commit{start}
	seen := map[plumbing.Hash]bool{start.Hash: true}
	complete = true
	for n := 0; len(queue) > 0; n++ {
		if n >= h.depth {
			return false, false, nil
		}
		c := queue[0]
		queue = queue[1:]
		if c.Hash == want {
			return true, true, nil
		}
		for _, p := range c.ParentHashes {
			if seen[p] {
				continue
			}
			seen[p] = true
			pc, err := h.repo.CommitObject(p)
			if errors.Is(err, plumbing.ErrObjectNotFound) {
				complete = false // the shallow boundary
				continue
			}
			if err != nil {
				return false, false, fmt.Errorf("history: commit %s: %w", p, err)
			}
			queue = append(queue, pc)
		}
	}
	return false, complete, nil
}

// ReadFile returns the content of path at commit, at most limit bytes;
// os.ErrNotExist when the commit has no such file.
func (h *History) ReadFile(commit, path string, limit int64) ([]byte, error) {
	c, err := h.repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("history: commit %s: %w", commit, err)
	}
	f, err := c.File(path)
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, fmt.Errorf("%s at %s: %w", path, commit, os.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %w", path, commit, err)
	}
	if !f.Mode.IsFile() || f.Size > limit {
		return nil, fmt.Errorf("%s at %s: not a regular file of at most %d bytes", path, commit, limit)
	}
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, limit))
}
