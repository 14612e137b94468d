package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// pushEvent holds the fields of GitHub's push payload that Gantry uses.
// https://docs.github.com/en/webhooks/webhook-events-and-payloads#push
type pushEvent struct {
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Created    bool   `json:"created"`
	Deleted    bool   `json:"deleted"`
	Forced     bool   `json:"forced"`
	Repository struct {
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
	} `json:"repository"`
	Pusher struct {
		Name string `json:"name"`
	} `json:"pusher"`
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
	HeadCommit *struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	} `json:"head_commit"`
}

// parsePush decodes and checks a push payload. The signature was verified
// already, but the fields still reach keys, URLs and git: they must have
// the shape GitHub gives them.
func parsePush(b []byte) (*pushEvent, error) {
	var p pushEvent
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, errors.New("payload is not a valid push event (JSON)")
	}
	if p.Ref == "" || len(p.Ref) > 1024 || !strings.HasPrefix(p.Ref, "refs/") || strings.ContainsAny(p.Ref, " \t\n\r\x00~^:?*[\\") || strings.Contains(p.Ref, "..") {
		return nil, errors.New("push event: missing or malformed ref")
	}
	owner, name, ok := strings.Cut(p.Repository.FullName, "/")
	if !ok || !validRepoPart(owner) || !validRepoPart(name) {
		return nil, errors.New("push event: missing or malformed repository.full_name")
	}
	if !isSHA(p.After) {
		return nil, errors.New("push event: missing or malformed after (commit SHA)")
	}
	if p.CloneURLSet() && !strings.HasPrefix(p.Repository.CloneURL, "https://") {
		return nil, fmt.Errorf("push event: repository.clone_url must be https")
	}
	return &p, nil
}

// CloneURLSet reports whether the payload named a clone URL.
func (p *pushEvent) CloneURLSet() bool { return p.Repository.CloneURL != "" }

// isSHA accepts a SHA-1 (40) or SHA-256 (64) hex object id.
func isSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

func isZeroSHA(s string) bool { return strings.Trim(s, "0") == "" }
