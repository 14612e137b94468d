package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// slackMessage is the incoming-webhook body. Only "text" is used: it is
// the field every Slack-compatible receiver (Slack, Mattermost,
// Rocket.Chat, Discord's /slack endpoint) understands.
type slackMessage struct {
	Text string `json:"text"`
}

func (n *Notifier) postSlack(ctx context.Context, run Run) error {
	body, err := json.Marshal(slackMessage{Text: slackText(run, n.cfg.TopFindings)})
	if err != nil {
		return permanent(err)
	}
	return n.postJSON(ctx, "Slack webhook", n.slack, "application/json", nil, body)
}

// slackText renders the run in Slack's mrkdwn. Every value from the
// repository or the scan is escaped: a package or title holding
// "<https://evil|click>" must stay text, not become a link or a mention.
func slackText(run Run, top int) string {
	var b strings.Builder
	icon := map[Verdict]string{VerdictSuccess: ":white_check_mark:", VerdictFailure: ":x:", VerdictError: ":warning:", VerdictCancelled: ":no_entry_sign:"}[run.Verdict]
	if icon == "" {
		icon = ":grey_question:"
	}
	runRef := "run " + slackEscape(run.ID)
	if run.URL != "" {
		runRef = fmt.Sprintf("<%s|run %s>", slackEscape(run.URL), slackEscape(run.ID))
	}
	fmt.Fprintf(&b, "%s *Gantry %s*: %s for `%s` at `%s`", icon, slackEscape(string(run.Verdict)), runRef,
		slackEscape(run.Repo), slackEscape(shortSHA(run.Commit)))
	if run.Ref != "" {
		fmt.Fprintf(&b, " (%s)", slackEscape(run.Ref))
	}
	b.WriteByte('\n')
	for _, f := range run.Functions {
		fmt.Fprintf(&b, "• `%s`: %s: %s\n", slackEscape(f.Name), slackEscape(string(f.Verdict)), slackEscape(truncate(f.reason(), 300)))
	}
	if fs := topFindings(run.Functions, top); len(fs) > 0 {
		b.WriteString("*Top findings*\n")
		for _, f := range fs {
			fix := "no fix released"
			if f.Fixed != "" {
				fix = "fixed in " + slackEscape(f.Fixed)
			}
			fmt.Fprintf(&b, "• %s `%s` in %s %s (%s), function `%s`", slackEscape(f.Severity), slackEscape(f.ID),
				slackEscape(f.Package), slackEscape(f.Installed), fix, slackEscape(f.Function))
			if f.Title != "" {
				fmt.Fprintf(&b, ": %s", slackEscape(truncate(f.Title, 200)))
			}
			b.WriteByte('\n')
		}
	}
	b.WriteString(slackIgnores(run.Functions))
	return truncate(b.String(), 39000) // Slack truncates text past 40,000 characters
}

// slackEscape applies Slack's three control-character escapes.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
