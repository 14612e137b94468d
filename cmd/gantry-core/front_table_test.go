package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/config"
	"github.com/gantry-dev/gantry/internal/cmdtable"
)

var updateFrontTable = flag.Bool("update-front-table", false, "rewrite cmd/gantry/commands.json from this command tree")

// frontTablePath is the table the front binary (cmd/gantry) embeds.
const frontTablePath = "../gantry/commands.json"

// commandRoles names the role binary of each command that is not core's
// alone, by its path or the path of a group above it (the nearest wins).
// The role's files carry its build tag (gantry_role_admission,
// gantry_role_build, gantry_role_policy); TestRoleBinaries builds each role
// and checks that it answers for exactly these commands.
var commandRoles = map[string]string{
	"admission": cmdtable.RoleAdmission,
	"verify":    cmdtable.RoleAdmission,
	"policy":    cmdtable.RoleAdmission,
	"build":     cmdtable.RoleBuild,
	"lint":      cmdtable.RoleBuild,
}

// commandFlagRoles are the narrower roles that run a command when one of
// its boolean flags is given (gantry_role_policy has `policy check`, which
// it hands on to gantry-admission without --offline).
var commandFlagRoles = map[string]map[string]string{
	"policy check": {"--offline": cmdtable.RolePolicy},
}

// commandRole is the role of the command at path.
func commandRole(path string) string {
	for p := path; p != ""; {
		if r, ok := commandRoles[p]; ok {
			return r
		}
		i := strings.LastIndexByte(p, ' ')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return cmdtable.RoleCore
}

// frontTable builds the command table from this binary's cobra tree: the
// help of every visible command as `gantry PATH --help` prints it.
func frontTable(t *testing.T) []byte {
	t.Helper()
	root := newRootCmd(&app{})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	tab := cmdtable.Table{Commands: map[string]cmdtable.Command{}}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), "gantry"), " ")
		args := append(strings.Fields(path), "--help")
		code, out, stderr := gantry(t, nil, args...)
		if code != exitOK || stderr != "" {
			t.Fatalf("gantry %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
		c.InitDefaultHelpFlag()
		flags := map[string]bool{}
		add := func(f *pflag.Flag) {
			if f.Hidden {
				return
			}
			takes := f.NoOptDefVal == ""
			flags["--"+f.Name] = takes
			if f.Shorthand != "" {
				flags["-"+f.Shorthand] = takes
			}
		}
		c.LocalFlags().VisitAll(add)
		c.InheritedFlags().VisitAll(add)
		tab.Commands[path] = cmdtable.Command{Role: commandRole(path), FlagRoles: commandFlagRoles[path], Runnable: c.Runnable(), Help: out, Flags: flags}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	tab.ConfigEnv = []string{"GANTRY_CONFIG"}
	for name := range config.EnvNames() {
		tab.ConfigEnv = append(tab.ConfigEnv, name)
	}
	slices.Sort(tab.ConfigEnv)
	b, err := json.MarshalIndent(tab, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// The front answers help and routes from a copy of this tree; it must be
// the current one.
func TestFrontCommandTable(t *testing.T) {
	got := frontTable(t)
	if *updateFrontTable {
		if err := os.WriteFile(frontTablePath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(frontTablePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not this command tree: regenerate it with\n\tgo test ./cmd/gantry-core -run TestFrontCommandTable -update-front-table",
			filepath.Clean(filepath.Join("cmd/gantry-core", frontTablePath)))
	}
	tab, err := cmdtable.Parse(got)
	if err != nil {
		t.Fatalf("the generated table does not parse: %v", err)
	}
	for path := range commandFlagRoles {
		if _, ok := tab.Commands[path]; !ok {
			t.Errorf("commandFlagRoles names %q, which is not a command", path)
		}
	}
	for path := range commandRoles {
		if _, ok := tab.Commands[path]; !ok {
			t.Errorf("commandRoles names %q, which is not a command", path)
		}
	}
}
