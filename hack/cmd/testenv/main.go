// Command testenv installs and runs Gantry's test environment: real daemons on
// loopback (buildkitd, an OCI registry, etcd + kube-apiserver, and a second
// kube-apiserver with kube-controller-manager) and the tool
// binaries tests use (buildctl, kubectl, cosign, nats-server, staticcheck, and
// trivy at the version go.mod requires).
//
// It is run through the hack/testenv wrapper:
//
//	hack/testenv up       install what is missing, start what is not running, write .testenv/env
//	hack/testenv up demo  the same, installing only what `make demo` needs (no test-only
//	                      tools: cosign, nats-server, staticcheck, trivy CLI, chromium,
//	                      kube-controller-manager; without the last, the controllers'
//	                      kube-apiserver is not started either)
//	hack/testenv down     stop the daemons this state dir started (by pid)
//	hack/testenv env      print the env file (eval-able)
//	hack/testenv status   one line per daemon
//	hack/testenv install  only install the tools
//	hack/testenv which T  install if needed, then print the path of tool T
//
// Daemons log to files under the state dir, never to the terminal, and are
// started in their own session so that they do not hold the caller's output.
// Binaries are cached outside the clone (~/.cache/gantry/bin), keyed by version.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

const usage = `usage: hack/testenv up [demo]|down|env|status|install|which TOOL

Environment:
  GANTRY_TESTENV_DIR   state dir (default: <repo>/.testenv)
  GANTRY_CACHE_DIR     binary cache (default: ~/.cache/gantry)
`

func main() {
	demoOnly := len(os.Args) == 3 && os.Args[1] == "up" && os.Args[2] == "demo"
	if len(os.Args) < 2 || !demoOnly && (len(os.Args) != 2) != (os.Args[1] == "which") {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	rig, err := newRig()
	if err != nil {
		fail(err)
	}
	rig.demoOnly = demoOnly
	// One invocation at a time per state dir: two concurrent `up`s would
	// race on ports and pid files. The lock's fd is close-on-exec, so the
	// daemons we start do not inherit (and hold) it.
	unlock, err := rig.lock()
	if err != nil {
		fail(err)
	}
	defer unlock()
	switch os.Args[1] {
	case "up":
		err = rig.up()
	case "down":
		err = rig.down()
	case "env":
		var b []byte
		b, err = os.ReadFile(rig.envFile())
		if errors.Is(err, os.ErrNotExist) {
			err = errors.New("no test environment: run `hack/testenv up` first")
		}
		os.Stdout.Write(b)
	case "status":
		rig.status()
	case "install":
		_, err = rig.install()
	case "which":
		var path string
		if path, err = rig.which(os.Args[2]); err == nil {
			fmt.Println(path)
		}
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
	os.Exit(1)
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "testenv: "+format+"\n", args...)
}

// rig holds the paths of one clone's test environment.
type rig struct {
	root  string // repository root
	state string // state dir
	cache string // binary cache dir
	// demoOnly installs only what the demo needs: a newcomer's first
	// `make demo` does not wait for tools only the tests use (those
	// already built are still found).
	demoOnly bool
}

func newRig() (*rig, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	state := os.Getenv("GANTRY_TESTENV_DIR")
	if state == "" {
		state = filepath.Join(root, ".testenv")
	}
	if state, err = filepath.Abs(state); err != nil {
		return nil, err
	}
	cache := os.Getenv("GANTRY_CACHE_DIR")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("no home dir for the binary cache (set GANTRY_CACHE_DIR): %w", err)
		}
		cache = filepath.Join(home, ".cache", "gantry")
	}
	return &rig{root: root, state: state, cache: cache}, nil
}

func (r *rig) lock() (func(), error) {
	if err := os.MkdirAll(r.state, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(r.state, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func (r *rig) envFile() string { return filepath.Join(r.state, "env") }

// repoRoot finds the directory with Gantry's go.mod, from the working dir up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			len(b) > 0 && string(b[:min(len(b), 36)]) == "module github.com/gantry-dev/gantry\n" {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the Gantry repository")
		}
		dir = parent
	}
}
