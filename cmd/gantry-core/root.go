package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/config"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitPolicy  = 1
	exitFailure = 2
)

// exitError carries an exit code through cobra's error return.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// policyFailure marks err as a policy verdict (exit 1), not a malfunction.
func policyFailure(err error) error { return &exitError{code: exitPolicy, err: err} }

// usageError is a command line that cannot be run as given (exit 2).
func usageError(msg string) error { return &exitError{code: exitFailure, err: errors.New(msg)} }

// app is what every command gets: streams, the loaded configuration and a
// logger. cfg and log are ready inside RunE.
type app struct {
	stdout, stderr io.Writer
	env            []string
	configFile     string
	configFlags    map[string]string // config key path → name of the global flag that sets it
	cfg            *config.Config
	log            *slog.Logger
}

// commands are the subcommands; each file adds its own in init, so that
// commands can be added without touching this one.
var commands []func(*app) *cobra.Command

func register(f func(*app) *cobra.Command) { commands = append(commands, f) }

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "gantry",
		Short:         "Supply-chain-secure build and deploy pipeline for serverless functions",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.load(cmd)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "configuration file (YAML; see examples/gantry.yaml); also GANTRY_CONFIG")
	pf.String("log-level", "", "log level: debug, info, warn, error (default info); also GANTRY_LOG_LEVEL")
	pf.String("log-format", "", "log format: text, json (default text); also GANTRY_LOG_FORMAT")
	a.configFlags = map[string]string{"log.level": "log-level", "log.format": "log-format"}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &exitError{code: exitFailure, err: err}
	})
	for _, f := range commands {
		root.AddCommand(f(a))
	}
	return root
}

// load resolves the configuration (flag > env > file > default) and builds
// the logger. Only flags the user set override lower layers.
func (a *app) load(cmd *cobra.Command) error {
	file := a.configFile
	if file == "" {
		file = lookupEnv(a.env, "GANTRY_CONFIG")
	}
	flags := map[string]string{}
	for key, name := range a.configFlags {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
			flags[key] = f.Value.String()
		}
	}
	cfg, err := config.Load(config.Source{File: file, Env: a.env, Flags: flags})
	if err != nil {
		return &exitError{code: exitFailure, err: err}
	}
	a.cfg = cfg
	a.log = newLogger(a.stderr, cfg.Log)
	return nil
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config.Load
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func lookupEnv(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := cutEnv(env[i]); ok && k == name {
			return v
		}
	}
	return ""
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return "", "", false
}

// run executes the CLI and returns the process exit code.
func run(args []string, stdout, stderr io.Writer, env []string) int {
	a := &app{stdout: stdout, stderr: stderr, env: env}
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "gantry: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// cobra's own argument and unknown-command errors are usage errors.
	return exitFailure
}
