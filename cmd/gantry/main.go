// Command gantry is the command users type. It links no command: it
// prints help and the version itself, from a table generated from the
// commands' own definitions (commands.json, see internal/cmdtable), and
// hands every other command line, unchanged, to the role binary that
// implements it:
//
//	gantry-admission  admission, verify, policy   (no Trivy, BuildKit or Helm)
//	gantry-policy     policy check --offline      (no cosign, client-go or registry client)
//	gantry-build      build, lint                 (BuildKit's client, no Trivy or Kubernetes)
//	gantry-core       every command; the fallback when the others are absent
//
// So `gantry version` and `gantry verify --help` start in milliseconds, and
// a command pays only for the packages its role links (`gantry verify`
// does not initialise Trivy). The role binary is looked for beside this
// executable (symlinks resolved), then in ../libexec/gantry; never on
// PATH, so a directory earlier on PATH cannot stand in for it. It replaces
// this process (exec), so signals, exit codes and standard streams are
// the role binary's own.
package main

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/gantry-dev/gantry/internal/cmdtable"
	"github.com/gantry-dev/gantry/internal/rolebin"
	"github.com/gantry-dev/gantry/internal/version"
)

//go:embed commands.json
var commandsJSON []byte

// Exit codes, as every gantry command uses them.
const (
	exitOK      = 0
	exitFailure = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Environ(), execRole))
}

// execFunc replaces the process with path, or returns why it could not.
type execFunc func(path string, argv, env []string) error

func execRole(path string, argv, env []string) error { return syscall.Exec(path, argv, env) }

func run(args []string, stdout, stderr io.Writer, env []string, exec execFunc) int {
	tab, err := cmdtable.Parse(commandsJSON)
	if err != nil {
		fmt.Fprintf(stderr, "gantry: %v\n", err)
		return exitFailure
	}
	r := tab.Route(args)
	if r.Certain && r.Help {
		fmt.Fprint(stdout, tab.Commands[r.Path].Help)
		return exitOK
	}
	if r.Certain && r.Path == "version" && len(r.Args) == 0 && !readsConfig(tab, r, env) {
		if err := printVersion(stdout, r); err == nil {
			return exitOK
		}
		// Anything else (an unknown --output) is the role binary's to refuse.
	}
	front, err := rolebin.Self()
	if err != nil {
		fmt.Fprintf(stderr, "gantry: %v\n", err)
		return exitFailure
	}
	bin, err := rolebin.Find(front, tab.RouteRole(r))
	if err != nil {
		fmt.Fprintf(stderr, "gantry: %v\n", err)
		return exitFailure
	}
	err = exec(bin, append([]string{bin}, args...), env)
	fmt.Fprintf(stderr, "gantry: run %s: %v\n", bin, err)
	return exitFailure
}

// readsConfig reports whether a role binary would read configuration for
// this command line: a file, or a GANTRY_* variable of a configuration key,
// which it validates. `gantry version` with a broken configuration fails
// there, and must fail the same way here.
func readsConfig(tab *cmdtable.Table, r cmdtable.Route, env []string) bool {
	for _, f := range r.Flags {
		if f.Name == "--config" || strings.HasPrefix(f.Name, "--log-") {
			return true
		}
	}
	return tab.ReadsConfig(env)
}

func printVersion(w io.Writer, r cmdtable.Route) error {
	format := "text"
	for _, f := range r.Flags {
		if f.Name == "-o" || f.Name == "--output" {
			format = f.Value
		}
	}
	return version.Get().Write(w, format)
}
