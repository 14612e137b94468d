package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Every ignore the gate used is in the Slack text, the check run summary
// and the CloudEvent, escaped like every other value from a repository.
func TestIgnoresAreListed(t *testing.T) {
	run := Run{ID: "r1", Repo: "acme/hello", Commit: strings.Repeat("a", 40), Verdict: VerdictSuccess,
		Functions: []Function{{Name: "hello", Verdict: VerdictSuccess, Ignores: []Ignore{{
			ID: "CVE-2099-0002", Package: "openssl", Reason: "not reachable <https://evil|click>", Expires: "2027-01-31",
			Source: "repository (.gantry/ignore.yaml)", Line: 2, Findings: []string{"CRITICAL CVE-2099-0002 in openssl 3.0.11"},
		}}}}}
	slack := slackText(run, 5)
	for _, want := range []string{"Ignored findings (1 ignore entries used)", "CVE-2099-0002 (package openssl) waived CRITICAL CVE-2099-0002 in openssl 3.0.11",
		"repository (.gantry/ignore.yaml) line 2", "until 2027-01-31", "&lt;https://evil|click&gt;"} {
		if !strings.Contains(slack, want) {
			t.Errorf("Slack text lacks %q:\n%s", want, slack)
		}
	}
	sum := checkSummary(run)
	for _, want := range []string{"### Ignored findings (1 ignore entries used)", "| CVE-2099-0002 (openssl) | CRITICAL CVE-2099-0002 in openssl 3.0.11 | hello | repository (.gantry/ignore.yaml) line 2 | 2027-01-31 |"} {
		if !strings.Contains(sum, want) {
			t.Errorf("check run summary lacks %q:\n%s", want, sum)
		}
	}
	n := &Notifier{now: time.Now}
	b, err := json.Marshal(n.cloudEvent(run))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"ignores":[{"id":"CVE-2099-0002"`) {
		t.Errorf("CloudEvent lacks the ignore: %s", b)
	}
	// No ignore used: no section.
	run.Functions[0].Ignores = nil
	if s := slackText(run, 5); strings.Contains(s, "Ignored") {
		t.Errorf("Slack text with no ignores: %s", s)
	}
}
