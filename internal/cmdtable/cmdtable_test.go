package cmdtable

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// testTable is a small tree shaped like gantry's: global flags on every
// command, a group with subcommands, runnable leaves with their own flags.
func testTable(t testing.TB) *Table {
	t.Helper()
	global := map[string]bool{"--config": true, "--log-level": true, "-h": false, "--help": false}
	with := func(extra map[string]bool) map[string]bool {
		m := map[string]bool{}
		for k, v := range global {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tab := Table{Commands: map[string]Command{
		"":        {Role: RoleCore, Help: "root help\n", Flags: with(nil)},
		"version": {Role: RoleCore, Runnable: true, Help: "version help\n", Flags: with(map[string]bool{"-o": true, "--output": true})},
		"verify":  {Role: RoleAdmission, Runnable: true, Help: "verify help\n", Flags: with(map[string]bool{"--policy": true, "-o": true, "--output": true})},
		"policy":  {Role: RoleAdmission, Help: "policy help\n", Flags: with(nil)},
		"policy check": {Role: RoleAdmission, Runnable: true, Help: "check help\n", Flags: with(map[string]bool{"-f": true, "--filename": true, "--offline": false}),
			FlagRoles: map[string]string{"--offline": RolePolicy}},
		"help": {Role: RoleCore, Runnable: true, Help: "help help\n", Flags: with(nil)},
	}}
	b, err := json.Marshal(tab)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoute(t *testing.T) {
	tab := testTable(t)
	for _, tc := range []struct {
		args []string
		want Route
	}{
		{nil, Route{Path: "", Certain: true, Help: true}},
		{[]string{"version"}, Route{Path: "version", Certain: true}},
		{[]string{"version", "-o", "json"}, Route{Path: "version", Certain: true, Flags: []Flag{{"-o", "json"}}}},
		{[]string{"version", "--output=json"}, Route{Path: "version", Certain: true, Flags: []Flag{{"--output", "json"}}}},
		// Global flags before the command, their values not taken for commands.
		{[]string{"--config", "verify", "verify", "img"}, Route{Path: "verify", Certain: true, Args: []string{"img"}, Flags: []Flag{{"--config", "verify"}}}},
		{[]string{"verify", "--help"}, Route{Path: "verify", Certain: true, Help: true, Flags: []Flag{{"--help", ""}}}},
		{[]string{"policy", "check", "-h"}, Route{Path: "policy check", Certain: true, Help: true, Flags: []Flag{{"-h", ""}}}},
		{[]string{"policy", "--log-level", "debug", "check", "-f", "-", "--offline"}, Route{Path: "policy check", Certain: true,
			Flags: []Flag{{"--log-level", "debug"}, {"-f", "-"}, {"--offline", ""}}}},
		// A group named alone prints its help.
		{[]string{"policy"}, Route{Path: "policy", Certain: true, Help: true}},
		// A word that is not a subcommand of a group: cobra's error, not ours.
		{[]string{"policy", "chek"}, Route{Path: "policy", Args: []string{"chek"}}},
		// Unknown flag: only the role binary knows what it means.
		{[]string{"verify", "--nope", "--help"}, Route{Path: "verify"}},
		// A flag that takes no value written with one.
		{[]string{"policy", "check", "--offline=true"}, Route{Path: "policy check"}},
		// A flag whose value is missing.
		{[]string{"verify", "--policy"}, Route{Path: "verify"}},
		// After the first positional argument, words are arguments.
		{[]string{"verify", "img", "version"}, Route{Path: "verify", Certain: true, Args: []string{"img", "version"}}},
		// "--" ends the flags: a --help after it is an argument.
		{[]string{"verify", "--", "--help"}, Route{Path: "verify", Certain: true, Args: []string{"--help"}}},
		// "-" alone is an argument (standard input).
		{[]string{"verify", "-"}, Route{Path: "verify", Certain: true, Args: []string{"-"}}},
		// help TOPIC.
		{[]string{"help", "policy", "check"}, Route{Path: "policy check", Certain: true, Help: true}},
		{[]string{"help"}, Route{Path: "", Certain: true, Help: true}},
		{[]string{"help", "policy", "nope"}, Route{Path: "policy"}},
		// help with flags is the help command's own help...
		{[]string{"help", "--help"}, Route{Path: "help", Certain: true, Help: true, Flags: []Flag{{"--help", ""}}}},
		// ...and with a topic too, cobra's to decide.
		{[]string{"help", "policy", "-h"}, Route{Path: "help", Help: true, Args: []string{"policy"}, Flags: []Flag{{"-h", ""}}}},
		// Unknown top-level word: the root with an argument, uncertain.
		{[]string{"frobnicate"}, Route{Path: "", Args: []string{"frobnicate"}}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got := tab.Route(tc.args)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Route(%q)\n got %+v\nwant %+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestRole(t *testing.T) {
	tab := testTable(t)
	for path, want := range map[string]string{"policy check": RoleAdmission, "version": RoleCore, "no such": RoleCore} {
		if got := tab.Role(path); got != want {
			t.Errorf("Role(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for name, doc := range map[string]string{
		"not JSON":     `{`,
		"no root":      `{"commands":{"version":{"role":"core"}}}`,
		"unknown role": `{"commands":{"":{"role":"core"},"version":{"role":"everything"}}}`,
		"orphan":       `{"commands":{"":{"role":"core"},"policy check":{"role":"admission"}}}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: Parse accepted %s", name, doc)
		}
	}
}

// Whatever the arguments, Route returns, names a command of the table,
// and never claims help it cannot give.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"", "version -o json", "policy check -f - --offline", "help policy", "--config x verify --help", "verify -- -h", "policy chek"} {
		f.Add(s)
	}
	tab := testTable(f)
	f.Fuzz(func(t *testing.T, line string) {
		r := tab.Route(strings.Split(line, " "))
		if _, ok := tab.Commands[r.Path]; !ok {
			t.Fatalf("Route(%q).Path = %q, not a command", line, r.Path)
		}
		if r.Certain && !r.Help && !tab.Commands[r.Path].Runnable {
			t.Fatalf("Route(%q): certain, no help, but %q is a group", line, r.Path)
		}
	})
}

// A flag narrows the role only when the table read the whole command line
// and the flag is given plainly (--offline=false is not read: uncertain).
func TestRouteRole(t *testing.T) {
	tab := testTable(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "check", "-f", "-"}, RoleAdmission},
		{[]string{"policy", "check", "-f", "-", "--offline"}, RolePolicy},
		{[]string{"--offline", "policy", "check"}, RoleCore}, // not a root flag: unread, core's cobra refuses it
		{[]string{"policy", "check", "--offline=false"}, RoleAdmission},
		{[]string{"policy", "check", "--offline=true"}, RoleAdmission},
		{[]string{"policy", "check", "--offline", "--no-such-flag"}, RoleAdmission},
		{[]string{"verify", "img"}, RoleAdmission},
		{[]string{"version"}, RoleCore},
	} {
		if got := tab.RouteRole(tab.Route(tc.args)); got != tc.want {
			t.Errorf("%q: role %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestParseRefusesBadFlagRoles(t *testing.T) {
	for name, c := range map[string]Command{
		"value flag":   {Role: RoleAdmission, Flags: map[string]bool{"-f": true}, FlagRoles: map[string]string{"-f": RolePolicy}},
		"no flag":      {Role: RoleAdmission, Flags: map[string]bool{}, FlagRoles: map[string]string{"--offline": RolePolicy}},
		"not narrower": {Role: RoleBuild, Flags: map[string]bool{"--offline": false}, FlagRoles: map[string]string{"--offline": RolePolicy}},
	} {
		b, err := json.Marshal(Table{Commands: map[string]Command{"": {Role: RoleCore}, "x": c}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(b); err == nil || !strings.Contains(err.Error(), "flag role") {
			t.Errorf("%s: Parse = %v, want a flag role error", name, err)
		}
	}
}
