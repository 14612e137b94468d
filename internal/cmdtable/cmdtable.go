// Package cmdtable is the table of commands the front binary (cmd/gantry)
// answers help from and routes by, without linking any command: every
// command path, the role binary that implements it, the help text cobra
// prints for it, and which of its flags take a value. The table is
// generated from the role binaries' own cobra tree (see
// cmd/gantry-core/front_table_test.go), so the two cannot drift apart
// unnoticed.
//
// Routing is deliberately conservative: whatever the table cannot read
// with certainty (an unknown flag, an unknown subcommand of a group) is
// left to the role binary, whose cobra parsing has the last word.
package cmdtable

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/internal/rolebin"
)

// Roles that implement commands (see package rolebin).
const (
	RoleCore      = rolebin.Core
	RoleAdmission = rolebin.Admission
	RoleBuild     = rolebin.Build
	RolePolicy    = rolebin.Policy
)

// Table is the whole command tree.
type Table struct {
	// Commands by path: the words after "gantry" joined by one space;
	// "" is the root.
	Commands map[string]Command `json:"commands"`
	// ConfigEnv are the environment variables the commands read
	// configuration from (GANTRY_CONFIG and one per configuration key).
	ConfigEnv []string `json:"configEnv"`
}

// Command is one node of the tree.
type Command struct {
	Role string `json:"role"`
	// Runnable is false for groups (e.g. "policy"), which only print help.
	Runnable bool `json:"runnable"`
	// Help is exactly what `gantry PATH --help` prints.
	Help string `json:"help"`
	// Flags the command accepts, its own and inherited, by spelling
	// ("--name", "-n"), true when the flag takes a value.
	Flags map[string]bool `json:"flags"`
	// FlagRoles are narrower roles that can run the command when a
	// boolean flag is given (`policy check --offline` needs no registry
	// client: gantry-policy runs it), by the flag's spelling.
	FlagRoles map[string]string `json:"flagRoles,omitempty"`
}

// Parse reads a table and checks that it can route: a root, a known role
// for every command, every command's parent present.
func Parse(b []byte) (*Table, error) {
	var t Table
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("command table: %w", err)
	}
	if _, ok := t.Commands[""]; !ok {
		return nil, fmt.Errorf("command table: no root command")
	}
	if !slices.IsSorted(t.ConfigEnv) {
		return nil, fmt.Errorf("command table: configEnv is not sorted")
	}
	for path, c := range t.Commands {
		switch c.Role {
		case RoleCore, RoleAdmission, RoleBuild, RolePolicy:
		default:
			return nil, fmt.Errorf("command table: %q: unknown role %q", path, c.Role)
		}
		for flag, role := range c.FlagRoles {
			if takes, ok := c.Flags[flag]; !ok || takes {
				return nil, fmt.Errorf("command table: %q: flag role for %q, which is not a boolean flag of the command", path, flag)
			}
			if !rolebin.Implements(c.Role, role) {
				return nil, fmt.Errorf("command table: %q: flag role %q is not narrower than %q", path, role, c.Role)
			}
		}
		if path == "" {
			continue
		}
		parent := ""
		if i := strings.LastIndexByte(path, ' '); i >= 0 {
			parent = path[:i]
		}
		if _, ok := t.Commands[parent]; !ok {
			return nil, fmt.Errorf("command table: %q has no parent %q", path, parent)
		}
	}
	return &t, nil
}

// Route is what the table makes of a command line.
type Route struct {
	// Path of the command the arguments name ("" for the root).
	Path string
	// Certain is false when the table could not read every argument (an
	// unknown flag, a word after a group that names none of its
	// subcommands, "help" for an unknown topic): only the role binary can
	// answer then, and Help must not be acted on.
	Certain bool
	// Help is true when the arguments ask for Path's help: -h or --help,
	// "gantry help PATH", or a group or the root named with nothing else.
	Help bool
	// Args are the positional arguments after the path.
	Args []string
	// Flags are the flags given, by the spelling used ("--output", "-o"),
	// with their values ("" for flags that take none).
	Flags []Flag
}

// Flag is one flag of a command line.
type Flag struct {
	Name, Value string
}

// Route reads args (without the program name) the way cobra finds a
// command: flags may come before, between and after command words; a
// flag that takes a value consumes the next argument unless written
// --name=value; "--" ends the flags.
func (t *Table) Route(args []string) Route {
	r := Route{Certain: true}
	if len(args) > 0 && args[0] == "help" && !slices.ContainsFunc(args[1:], isFlag) {
		return t.helpTopic(args[1:])
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			r.Args = append(r.Args, args[i+1:]...)
			break
		}
		if isFlag(a) {
			name, value, hasValue := strings.Cut(a, "=")
			takes, known := t.Commands[r.Path].Flags[name]
			if !known || (hasValue && !takes) {
				r.Certain = false
				return r
			}
			if takes && !hasValue {
				if i+1 >= len(args) {
					r.Certain = false // cobra reports the missing value
					return r
				}
				i++
				value = args[i]
			}
			if name == "-h" || name == "--help" {
				r.Help = true
			}
			r.Flags = append(r.Flags, Flag{Name: name, Value: value})
			continue
		}
		if len(r.Args) == 0 {
			if child := join(r.Path, a); t.has(child) {
				r.Path = child
				continue
			}
		}
		r.Args = append(r.Args, a)
	}
	if r.Path == "help" && len(r.Args) > 0 {
		r.Certain = false // "help TOPIC" with flags: cobra decides
	}
	if c := t.Commands[r.Path]; !c.Runnable {
		if len(r.Args) > 0 {
			r.Certain = false // an unknown subcommand: cobra's error
		} else {
			r.Help = true
		}
	}
	return r
}

// helpTopic routes `gantry help WORDS…`: help for the command WORDS name.
func (t *Table) helpTopic(words []string) Route {
	r := Route{Certain: true, Help: true}
	for _, w := range words {
		child := join(r.Path, w)
		if !t.has(child) {
			return Route{Path: r.Path} // cobra prints "Unknown help topic"
		}
		r.Path = child
	}
	return r
}

// ReadsConfig reports whether env (KEY=VALUE entries) sets a variable the
// commands read configuration from.
func (t *Table) ReadsConfig(env []string) bool {
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := slices.BinarySearch(t.ConfigEnv, name); ok {
			return true
		}
	}
	return false
}

// Role is the role binary that implements path.
func (t *Table) Role(path string) string {
	if c, ok := t.Commands[path]; ok {
		return c.Role
	}
	return RoleCore
}

// RouteRole is the narrowest role binary that runs r: the command's
// role, or a narrower one its flags allow. Only a certain route can be
// narrowed: what the table could not read goes to the command's role.
func (t *Table) RouteRole(r Route) string {
	c, ok := t.Commands[r.Path]
	if !ok {
		return RoleCore
	}
	if !r.Certain {
		return c.Role
	}
	for _, f := range r.Flags {
		if role, ok := c.FlagRoles[f.Name]; ok {
			return role
		}
	}
	return c.Role
}

func (t *Table) has(path string) bool {
	_, ok := t.Commands[path]
	return ok
}

func isFlag(arg string) bool { return len(arg) > 1 && arg[0] == '-' }

func join(path, word string) string {
	if path == "" {
		return word
	}
	return path + " " + word
}
