package notify

import (
	"context"
	"crypto/rsa"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-github/v60/github"
)

// appAuth turns the GitHub App's private key into installation tokens:
// a short JWT (RS256, iss = App id) authenticates POST
// /app/installations/{id}/access_tokens, which returns a token valid for
// an hour. Tokens are cached until 5 minutes before they expire and are
// requested with only the permissions notify uses.
type appAuth struct {
	g              *githubReporter
	appID          int64
	installationID int64 // 0: looked up per repository
	key            *rsa.PrivateKey

	mu       sync.Mutex
	tokens   map[int64]appToken
	installs map[string]int64 // owner/repo → installation id
}

type appToken struct {
	token   string
	expires time.Time
}

// tokenMargin renews a token this long before it expires, so a token is
// never used at the edge of its life.
const tokenMargin = 5 * time.Minute

// appPermissions are all notify needs: statuses and check runs.
func appPermissions() *github.InstallationPermissions {
	return &github.InstallationPermissions{Checks: github.String("write"), Statuses: github.String("write")}
}

// appJWT signs the App's JWT. GitHub accepts at most 10 minutes of
// validity; iat is backdated a minute for clock drift, as GitHub advises.
func (a *appAuth) appJWT() (string, error) {
	now := a.g.n.now()
	claims := jwt.RegisteredClaims{
		Issuer:    strconv.FormatInt(a.appID, 10),
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(9 * time.Minute)),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(a.key)
	if err != nil {
		return "", permanent(fmt.Errorf("signing the GitHub App JWT: %v", err))
	}
	return s, nil
}

// token returns an installation token for owner/repo.
func (a *appAuth) token(ctx context.Context, owner, repo string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock() // one exchange at a time: concurrent callers reuse its token
	jwtClient := func() (*github.Client, error) {
		s, err := a.appJWT()
		if err != nil {
			return nil, err
		}
		return a.g.newClient(s), nil
	}

	id := a.installationID
	if id == 0 {
		id = a.installs[owner+"/"+repo]
	}
	if id == 0 {
		c, err := jwtClient()
		if err != nil {
			return "", err
		}
		inst, _, err := c.Apps.FindRepositoryInstallation(ctx, owner, repo)
		if err != nil {
			return "", fmt.Errorf("finding the GitHub App installation for %s/%s (install the App on the repository, or set notify.github.installationID): %w",
				owner, repo, classifyGitHub(err))
		}
		id = inst.GetID()
		if id == 0 {
			return "", permanent(fmt.Errorf("GitHub returned no installation id for %s/%s", owner, repo))
		}
		a.installs[owner+"/"+repo] = id
	}

	if t, ok := a.tokens[id]; ok && a.g.n.now().Add(tokenMargin).Before(t.expires) {
		return t.token, nil
	}
	c, err := jwtClient()
	if err != nil {
		return "", err
	}
	it, _, err := c.Apps.CreateInstallationToken(ctx, id, &github.InstallationTokenOptions{Permissions: appPermissions()})
	if err != nil {
		return "", fmt.Errorf("exchanging the GitHub App JWT for an installation token (installation %d; the App needs Checks: write and Commit statuses: write): %w",
			id, classifyGitHub(err))
	}
	if it.GetToken() == "" {
		return "", fmt.Errorf("GitHub returned an empty installation token for installation %d", id)
	}
	exp := it.GetExpiresAt().Time
	if exp.IsZero() {
		exp = a.g.n.now().Add(time.Hour)
	}
	a.tokens[id] = appToken{token: it.GetToken(), expires: exp}
	return it.GetToken(), nil
}
