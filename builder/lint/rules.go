package lint

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Rule describes one of Gantry's own rules.
type Rule struct {
	ID       string
	Severity Severity
	// Summary is the one-line doc: what is wrong and what to do instead.
	Summary string
}

// DocURL is where a Gantry rule is explained.
func (r Rule) DocURL() string {
	return "https://github.com/gantry-dev/gantry/blob/main/docs/builder.md#" + r.ID
}

// Gantry's supply-chain rules. IDs are stable: configs and inline ignores
// name them.
var (
	RuleRootUser = Rule{"gantry-root-user", Error,
		"The final stage must set a non-root USER (e.g. USER 1000:1000): functions never run as root, and admission refuses root containers."}
	RuleAddURL = Rule{"gantry-add-url", Error,
		"ADD from a URL fetches unverified remote content at build time: use ADD --checksum=sha256:… or download and verify in a RUN step."}
	RuleBaseLatest = Rule{"gantry-base-latest", Error,
		"Base image by the mutable tag latest (or no tag at all): pin it by digest (FROM image:tag@sha256:…)."}
	RuleBaseUnpinned = Rule{"gantry-base-unpinned", Warning,
		"Base image by tag without a digest: a tag can be moved to other content; pin it by digest (FROM image:tag@sha256:…)."}
	RuleSecretEnv = Rule{"gantry-secret-env", Error,
		"Secret-looking ENV/ARG/LABEL (by name or by value): these end up in the image config and the provenance; use RUN --mount=type=secret."}
	RuleCurlPipeShell = Rule{"gantry-curl-pipe-sh", Error,
		"A script downloaded and piped straight into a shell (curl|sh) runs unverified code: download, verify a checksum or signature, then run."}
	RuleInsecureRun = Rule{"gantry-insecure-run", Error,
		"RUN --security=insecure or --network=host gives the build step privileges over the builder host: remove the flag."}
	RuleIgnoreReason = Rule{"gantry-ignore-reason", Warning,
		"An inline `# gantry:ignore=RULE reason` comment without a rule or a reason is not applied: say which rule and why."}
)

// Rules lists Gantry's own rules, for docs and SARIF rule metadata.
func Rules() []Rule {
	return []Rule{RuleRootUser, RuleAddURL, RuleBaseLatest, RuleBaseUnpinned, RuleSecretEnv,
		RuleCurlPipeShell, RuleInsecureRun, RuleIgnoreReason}
}

func newFinding(r Rule, line int, msg string) Finding {
	return Finding{Rule: r.ID, Source: SourceGantry, Severity: r.Severity, Line: line, Message: msg, DocURL: r.DocURL()}
}

func startLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

// gantryRules runs every Gantry rule over one parsed Dockerfile.
func gantryRules(df *dockerfile, opts Options) []Finding {
	var out []Finding
	args := metaArgEnv(df, opts.BuildArgs)
	lex := shell.NewLex(df.escape)
	for i := range df.stages {
		st := &df.stages[i]
		out = append(out, checkBase(df, i, lex, args)...)
		for _, cmd := range st.Commands {
			line := startLine(cmd.Location())
			switch c := cmd.(type) {
			case *instructions.AddCommand:
				out = append(out, checkAdd(c, line)...)
			case *instructions.EnvCommand:
				for _, kv := range c.Env {
					out = append(out, checkSecret("ENV", kv.Key, kv.Value, line)...)
				}
			case *instructions.ArgCommand:
				for _, kv := range c.Args {
					out = append(out, checkSecret("ARG", kv.Key, kv.ValueString(), line)...)
				}
			case *instructions.LabelCommand:
				for _, kv := range c.Labels {
					// A label's name is not a secret; its value may be.
					out = append(out, checkSecretValue("LABEL", kv.Key, kv.Value, line)...)
				}
			case *instructions.RunCommand:
				out = append(out, checkRun(c, line)...)
			case *instructions.OnbuildCommand:
				// The trigger runs in every image built FROM this one.
				if pipesToShell(c.Expression) {
					out = append(out, newFinding(RuleCurlPipeShell, line,
						"ONBUILD pipes a download into an interpreter, in every image built from this one: download, verify, then run"))
				}
			}
		}
	}
	for _, a := range df.metaArgs {
		line := startLine(a.Location())
		for _, kv := range a.Args {
			out = append(out, checkSecret("ARG", kv.Key, kv.ValueString(), line)...)
		}
	}
	out = append(out, checkFinalUser(df, opts.Target, lex, args)...)
	return out
}

// metaArgEnv is the environment FROM lines are expanded in: global ARG
// defaults, overridden by build args, as BuildKit does.
func metaArgEnv(df *dockerfile, buildArgs map[string]string) shell.EnvGetter {
	var env []string
	for _, a := range df.metaArgs {
		for _, kv := range a.Args {
			if v, ok := buildArgs[kv.Key]; ok {
				env = append(env, kv.Key+"="+v)
			} else if kv.Value != nil {
				env = append(env, kv.Key+"="+*kv.Value)
			}
		}
	}
	return shell.EnvsFromSlice(env)
}

// stageIndex returns the index of the stage named name before stage before,
// or -1 (then name is an image).
func stageIndex(df *dockerfile, name string, before int) int {
	for i := 0; i < before && i < len(df.stages); i++ {
		if df.stages[i].Name != "" && strings.EqualFold(df.stages[i].Name, name) {
			return i
		}
	}
	return -1
}

func checkBase(df *dockerfile, i int, lex *shell.Lex, args shell.EnvGetter) []Finding {
	st := &df.stages[i]
	line := startLine(st.Location)
	base, _, err := lex.ProcessWord(st.BaseName, args)
	if err != nil || base == "" {
		return []Finding{newFinding(RuleBaseUnpinned, line,
			fmt.Sprintf("base image %q does not resolve without build args, so it cannot be checked for a digest: give the ARG a default pinned by digest", st.BaseName))}
	}
	if strings.EqualFold(base, "scratch") || stageIndex(df, base, i) >= 0 {
		return nil
	}
	ref, err := reference.ParseNormalizedNamed(base)
	if err != nil {
		// BuildKit reports a malformed name itself; nothing to add here.
		return nil
	}
	if _, ok := ref.(reference.Digested); ok {
		return nil
	}
	tagged, ok := ref.(reference.Tagged)
	switch {
	case !ok:
		return []Finding{newFinding(RuleBaseLatest, line,
			fmt.Sprintf("base image %s has no tag and no digest (it means :latest): pin it by digest", base))}
	case tagged.Tag() == "latest":
		return []Finding{newFinding(RuleBaseLatest, line,
			fmt.Sprintf("base image %s uses the mutable tag latest: pin it by digest", base))}
	default:
		return []Finding{newFinding(RuleBaseUnpinned, line,
			fmt.Sprintf("base image %s is pinned by tag only: add its digest (%s@sha256:…)", base, base))}
	}
}

func checkAdd(c *instructions.AddCommand, line int) []Finding {
	var out []Finding
	for _, src := range c.SourcePaths {
		lower := strings.ToLower(src)
		remote := strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://")
		git := strings.HasPrefix(lower, "git@") || strings.HasPrefix(lower, "git://") ||
			(remote && strings.Contains(lower, ".git"))
		switch {
		case git && !strings.Contains(src, "#") && c.Checksum == "":
			out = append(out, newFinding(RuleAddURL, line,
				fmt.Sprintf("ADD %s fetches a git repository at a moving ref: pin a commit (#<sha>) or use --checksum", src)))
		case remote && !git && c.Checksum == "":
			out = append(out, newFinding(RuleAddURL, line,
				fmt.Sprintf("ADD %s downloads unverified content: add --checksum=sha256:<digest>", src)))
		}
	}
	return out
}

// Secret-looking names: a word of the variable name (split on _ - .) is one
// of these. Names that hold a reference to a secret rather than the secret
// itself (…_FILE, …_PATH) are fine: that is the recommended pattern.
var (
	secretWords = map[string]bool{
		"password": true, "passwd": true, "pass": true, "secret": true, "token": true,
		"apikey": true, "credential": true, "credentials": true, "privatekey": true,
		"accesskey": true, "secretkey": true, "auth": true, "pat": true,
	}
	secretPairs = map[[2]string]bool{
		{"api", "key"}: true, {"private", "key"}: true, {"access", "key"}: true,
		{"secret", "key"}: true, {"client", "secret"}: true, {"signing", "key"}: true,
		{"encryption", "key"}: true, {"ssh", "key"}: true, {"master", "key"}: true,
	}
	referenceSuffixes = []string{"file", "path", "dir", "url", "uri", "name", "id", "env", "type", "mode"}
)

func secretName(name string) bool {
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool {
		return r == '_' || r == '-' || r == '.'
	})
	if len(words) == 0 {
		return false
	}
	last := words[len(words)-1]
	for _, s := range referenceSuffixes {
		if last == s {
			return false
		}
	}
	for i, w := range words {
		if secretWords[w] {
			return true
		}
		if i+1 < len(words) && secretPairs[[2]string{w, words[i+1]}] {
			return true
		}
	}
	return false
}

// secretValues are the shapes of well-known credentials.
var secretValues = []struct {
	kind string
	re   *regexp.Regexp
}{
	{"AWS access key id", regexp.MustCompile(`\b(AKIA|ASIA)[0-9A-Z]{16}\b`)},
	{"GitHub token", regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b`)},
	{"GitLab token", regexp.MustCompile(`\bglpat-[A-Za-z0-9_\-]{20,}\b`)},
	{"Slack token", regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}`)},
	{"Stripe key", regexp.MustCompile(`\b[sr]k_live_[A-Za-z0-9]{16,}\b`)},
	{"Google API key", regexp.MustCompile(`\bAIza[0-9A-Za-z_\-]{35}\b`)},
	{"private key", regexp.MustCompile(`-----BEGIN ([A-Z]+ )?PRIVATE KEY-----`)},
	{"JSON web token", regexp.MustCompile(`\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}`)},
	{"URL with a password", regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@`)},
}

func secretValueKind(v string) string {
	for _, s := range secretValues {
		if s.re.MatchString(v) {
			return s.kind
		}
	}
	return ""
}

// LooksLikeSecret says whether a variable named name with value value
// looks like it carries a credential, and why; the value is never quoted.
// Builds use it to refuse secrets passed as build args.
func LooksLikeSecret(name, value string) (string, bool) {
	if secretName(name) {
		return "its name looks like a secret", true
	}
	if k := secretValueKind(value); k != "" {
		return "its value is shaped like a " + k, true
	}
	return "", false
}

// checkSecret flags a secret-looking name (even without a value: ARG values
// are recorded in max-mode provenance) and a secret-looking value.
func checkSecret(kind, name, value string, line int) []Finding {
	if secretName(name) {
		how := "its value is stored in the image"
		if kind == "ARG" {
			how = "build args are recorded in the image history and the provenance"
		}
		return []Finding{newFinding(RuleSecretEnv, line,
			fmt.Sprintf("%s %s looks like a secret: %s; pass it with RUN --mount=type=secret,id=%s", kind, name, how, strings.ToLower(name)))}
	}
	return checkSecretValue(kind, name, value, line)
}

func checkSecretValue(kind, name, value string, line int) []Finding {
	if k := secretValueKind(value); k != "" {
		// Never echo the value: it may be a live credential.
		return []Finding{newFinding(RuleSecretEnv, line,
			fmt.Sprintf("%s %s has a value shaped like a %s: remove it and rotate the credential; pass secrets with RUN --mount=type=secret", kind, name, k))}
	}
	return nil
}

// A download piped or substituted into an interpreter.
var (
	fetchTool   = `(curl|wget|fetch)\b`
	interpreter = `(sudo\s+(-\S+\s+)*)?(env\s+)?(/usr)?(/bin/)?(ba|z|k|da|a)?sh|python[0-9.]*|perl|ruby|node|php`
	pipeToShell = []*regexp.Regexp{
		regexp.MustCompile(`\b` + fetchTool + `[^|;&]*\|\s*` + `(` + interpreter + `)\b`),
		regexp.MustCompile(`\b(` + interpreter + `)\b[^;&|]*(-c\s*)?["']?\$\(\s*` + fetchTool),
		regexp.MustCompile(`\b(` + interpreter + `)\b\s*<\(\s*` + fetchTool),
		regexp.MustCompile("\\b(" + interpreter + ")\\b[^;&|]*`\\s*" + fetchTool),
	}
)

func pipesToShell(script string) bool {
	// Join continuation lines so a pipe split across lines still matches.
	script = strings.ReplaceAll(script, "\\\n", " ")
	for _, re := range pipeToShell {
		if re.MatchString(script) {
			return true
		}
	}
	return false
}

func checkRun(c *instructions.RunCommand, line int) []Finding {
	var out []Finding
	script := strings.Join(c.CmdLine, " ")
	for _, f := range c.Files {
		script += "\n" + f.Data
	}
	if pipesToShell(script) {
		out = append(out, newFinding(RuleCurlPipeShell, line,
			"RUN pipes a download into an interpreter: download to a file, verify its checksum or signature, then run it"))
	}
	if instructions.GetSecurity(c) == "insecure" {
		out = append(out, newFinding(RuleInsecureRun, line,
			"RUN --security=insecure runs the step with all capabilities on the builder: remove it"))
	}
	if instructions.GetNetwork(c) == "host" {
		out = append(out, newFinding(RuleInsecureRun, line,
			"RUN --network=host shares the builder host's network with the step: remove it (the default sandboxed network can still download)"))
	}
	return out
}

// checkFinalUser checks the stage that becomes the image: its last USER,
// following FROM <earlier stage> chains, must not be root.
func checkFinalUser(df *dockerfile, target string, lex *shell.Lex, args shell.EnvGetter) []Finding {
	idx := len(df.stages) - 1
	if target != "" {
		idx = -1
		for i, st := range df.stages {
			if strings.EqualFold(st.Name, target) {
				idx = i
			}
		}
		if idx < 0 {
			return nil // BuildKit reports an unknown target
		}
	}
	final := &df.stages[idx]
	for i := idx; i >= 0; {
		st := &df.stages[i]
		for j := len(st.Commands) - 1; j >= 0; j-- {
			u, ok := st.Commands[j].(*instructions.UserCommand)
			if !ok {
				continue
			}
			user, _, err := lex.ProcessWord(u.User, args)
			if err != nil || user == "" {
				return nil // set from a stage ARG: cannot be known before the build
			}
			name, _, _ := strings.Cut(user, ":")
			if name == "root" || strings.TrimLeft(name, "0") == "" {
				return []Finding{newFinding(RuleRootUser, startLine(u.Location()),
					fmt.Sprintf("the final stage runs as %s: set a non-root USER, e.g. USER 1000:1000", user))}
			}
			return nil
		}
		base, _, err := lex.ProcessWord(st.BaseName, args)
		if err != nil {
			break
		}
		i = stageIndex(df, base, i)
	}
	return []Finding{newFinding(RuleRootUser, startLine(final.Location),
		"the final stage sets no USER, so it runs as root unless its base image says otherwise: add USER 1000:1000 (or another non-root user)")}
}
