//go:build !gantry_role_admission && !gantry_role_build && !gantry_role_policy

package main

import (
	"context"
	"fmt"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/audit"
	"github.com/gantry-dev/gantry/auth"
	"github.com/gantry-dev/gantry/tokens"
)

func init() {
	register(func(a *app) *cobra.Command {
		cmd := &cobra.Command{
			Use:   "token",
			Short: "Create, list and revoke scoped API tokens",
			Long: `token manages the bearer tokens of the runs API and the dashboard. A token
has a name, one or more scopes (runs:read; runs:write also cancels runs;
admin) and an optional expiry. Only its SHA-256 is stored (tokens.store,
default tokens.json in queue.dataDir); a running gantry serve sees changes
at once. Creations and revocations are written to the audit log.`,
		}
		pf := cmd.PersistentFlags()
		pf.String("store", "", "token file (tokens.store; default tokens.json in queue.dataDir)")
		pf.String("data-dir", "", "data directory (queue.dataDir; default /var/lib/gantry)")
		cmd.PersistentPreRunE = withConfigFlags(a, map[string]string{"tokens.store": "store", "queue.dataDir": "data-dir"})
		cmd.AddCommand(tokenCreateCmd(a), tokenListCmd(a), tokenRevokeCmd(a))
		return cmd
	})
}

func openTokenStore(a *app) (*tokens.Store, error) {
	return tokens.Open(a.cfg.Tokens.StorePath(a.cfg.Queue.DataDir))
}

// cliAudit records token changes made from the command line, naming the
// operating-system user as the actor.
func cliAudit(a *app, e audit.Event) {
	path := a.cfg.Audit.FilePath(a.cfg.Queue.DataDir)
	if path == "" {
		return
	}
	l, err := audit.OpenFile(path)
	if err != nil {
		a.log.Error("audit log not written", "err", err)
		return
	}
	defer l.Close()
	e.Actor, e.Method = "cli", "local"
	if u, err := user.Current(); err == nil {
		e.Actor = "cli:" + u.Username
	}
	if err := l.Record(context.Background(), e); err != nil {
		a.log.Error("audit log not written", "err", err)
	}
}

type tokenCreated struct {
	Token     string       `json:"token"`
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	Scopes    []auth.Scope `json:"scopes"`
	ExpiresAt *time.Time   `json:"expiresAt,omitempty"`
}

func tokenCreateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create --name NAME --scope SCOPE [--expires 30d]",
		Short: "Create a token and print it once",
		Args:  cobra.NoArgs,
	}
	name := cmd.Flags().String("name", "", "who or what holds the token (letters, digits, . _ @ -)")
	scopes := cmd.Flags().StringSlice("scope", nil, "runs:read, runs:write or admin (repeat or comma-separate)")
	expires := cmd.Flags().String("expires", "90d", "lifetime: days (30d), a duration (12h), or never")
	format := outputFlag(cmd, "text", "json")
	cmd.RunE = func(_ *cobra.Command, _ []string) error {
		f, err := format()
		if err != nil {
			return err
		}
		if *name == "" || len(*scopes) == 0 {
			return usageError("token create needs --name and --scope (runs:read, runs:write or admin)")
		}
		var sc []auth.Scope
		for _, s := range *scopes {
			p, err := auth.ParseScope(strings.TrimSpace(s))
			if err != nil {
				return usageError(err.Error())
			}
			sc = append(sc, p)
		}
		ttl, err := tokens.ParseTTL(*expires)
		if err != nil {
			return usageError(err.Error())
		}
		store, err := openTokenStore(a)
		if err != nil {
			return err
		}
		plain, t, err := store.Create(tokens.CreateOptions{Name: *name, Scopes: sc, TTL: ttl})
		if err != nil {
			return err
		}
		cliAudit(a, audit.Event{Action: audit.ActionTokenCreate, Target: t.ID, Details: map[string]string{
			"name": t.Name, "scopes": joinScopes(t.Scopes), "expires": fmtTime(t.ExpiresAt)}})
		if f == "json" {
			return writeJSON(a.stdout, tokenCreated{Token: plain, ID: t.ID, Name: t.Name, Scopes: t.Scopes, ExpiresAt: t.ExpiresAt})
		}
		fmt.Fprintf(a.stderr, "created token %s (%s, %s, expires %s); it is shown only now:\n", t.ID, t.Name, joinScopes(t.Scopes), fmtTime(t.ExpiresAt))
		_, err = fmt.Fprintln(a.stdout, plain)
		return err
	}
	return cmd
}

type tokenListed struct {
	tokens.Token
	State string `json:"state"`
}

func tokenListCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List tokens (never their secrets)", Args: cobra.NoArgs}
	format := outputFlag(cmd, "text", "json")
	cmd.RunE = func(_ *cobra.Command, _ []string) error {
		f, err := format()
		if err != nil {
			return err
		}
		store, err := openTokenStore(a)
		if err != nil {
			return err
		}
		list, err := store.List()
		if err != nil {
			return err
		}
		now := time.Now()
		out := make([]tokenListed, 0, len(list))
		for _, t := range list {
			t.Hash = "" // not secret, but of no use to a reader
			out = append(out, tokenListed{Token: t, State: t.State(now)})
		}
		if f == "json" {
			return writeJSON(a.stdout, out)
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tSTATE\tCREATED\tEXPIRES")
		for _, t := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, joinScopes(t.Scopes), t.State,
				t.CreatedAt.Format(time.RFC3339), fmtTime(t.ExpiresAt))
		}
		return tw.Flush()
	}
	return cmd
}

func tokenRevokeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "revoke ID|NAME", Short: "Revoke a token (401 from then on)", Args: cobra.ExactArgs(1)}
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		store, err := openTokenStore(a)
		if err != nil {
			return err
		}
		t, err := store.Revoke(args[0])
		if err != nil {
			return err
		}
		cliAudit(a, audit.Event{Action: audit.ActionTokenRevoke, Target: t.ID, Details: map[string]string{"name": t.Name}})
		_, err = fmt.Fprintf(a.stdout, "revoked token %s (%s)\n", t.ID, t.Name)
		return err
	}
	return cmd
}

func joinScopes(s []auth.Scope) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = string(v)
	}
	return strings.Join(parts, ",")
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
