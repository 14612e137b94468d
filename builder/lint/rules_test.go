package lint

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const pinned = "busybox:1.36@sha256:0000000000000000000000000000000000000000000000000000000000000000"

// df builds a Dockerfile from a pinned base, the given body and a non-root
// USER, so that only the rule under test can fire.
func df(body string) string {
	return "FROM " + pinned + "\n" + body + "\nUSER 1000:1000\n"
}

func gantryFindings(t *testing.T, src string, opts Options) []Finding {
	t.Helper()
	opts.Hadolint = "off"
	rep, err := Lint(context.Background(), []File{{Path: "Dockerfile", Data: []byte(src)}}, opts)
	if err != nil {
		t.Fatalf("Lint: %v\n%s", err, src)
	}
	var out []Finding
	for _, f := range rep.Findings {
		if f.Source == SourceGantry {
			out = append(out, f)
		}
	}
	return out
}

func rulesOf(fs []Finding) []string {
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.Rule)
	}
	return ids
}

func TestGantryRules(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts Options
		want []string // rule ids, in order
		line int      // line of the first finding, when want is not empty
	}{
		// gantry-root-user
		{name: "user/none", src: "FROM " + pinned + "\nRUN true\n", want: []string{"gantry-root-user"}, line: 1},
		{name: "user/root", src: "FROM " + pinned + "\nUSER root\n", want: []string{"gantry-root-user"}, line: 2},
		{name: "user/uid 0 with group", src: "FROM " + pinned + "\nUSER 0:0\n", want: []string{"gantry-root-user"}, line: 2},
		{name: "user/root after non-root", src: "FROM " + pinned + "\nUSER 1000\nUSER root\n", want: []string{"gantry-root-user"}, line: 3},
		{name: "user/non-root", src: "FROM " + pinned + "\nUSER 1000:1000\n"},
		{name: "user/named", src: "FROM " + pinned + "\nUSER app\n"},
		{name: "user/non-root after root", src: "FROM " + pinned + "\nUSER root\nRUN true\nUSER app\n"},
		{name: "user/inherited from stage", src: "FROM " + pinned + " AS base\nUSER 1000\nFROM base\nRUN true\n"},
		{name: "user/only builder stage sets it", src: "FROM " + pinned + " AS build\nUSER 1000\nFROM " + pinned + "\nCOPY --from=build /x /x\n",
			want: []string{"gantry-root-user"}, line: 3},
		{name: "user/target stage checked", src: "FROM " + pinned + " AS app\nRUN true\nFROM " + pinned + "\nUSER 1000\n",
			opts: Options{Target: "app"}, want: []string{"gantry-root-user"}, line: 1},
		{name: "user/from stage arg is unknowable", src: "FROM " + pinned + "\nARG UID\nUSER ${UID}\n"},

		// gantry-add-url
		{name: "add/https", src: df("ADD https://example.com/tool.tgz /tmp/"), want: []string{"gantry-add-url"}, line: 2},
		{name: "add/http upper case", src: df("ADD HTTP://example.com/a /a"), want: []string{"gantry-add-url"}, line: 2},
		{name: "add/git moving ref", src: df("ADD https://github.com/moby/buildkit.git /src"), want: []string{"gantry-add-url"}, line: 2},
		{name: "add/https with checksum", src: df("ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/a /a")},
		{name: "add/git pinned commit", src: df("ADD https://github.com/moby/buildkit.git#v0.34.2 /src")},
		{name: "add/local file", src: df("ADD app.tar.gz /app/")},

		// gantry-base-latest / gantry-base-unpinned
		{name: "base/no tag", src: "FROM busybox\nUSER 1000\n", want: []string{"gantry-base-latest"}, line: 1},
		{name: "base/latest", src: "FROM busybox:latest\nUSER 1000\n", want: []string{"gantry-base-latest"}, line: 1},
		{name: "base/tag only", src: "FROM busybox:1.36\nUSER 1000\n", want: []string{"gantry-base-unpinned"}, line: 1},
		{name: "base/registry with port, no tag", src: "FROM 127.0.0.1:5000/base\nUSER 1000\n", want: []string{"gantry-base-latest"}, line: 1},
		{name: "base/digest", src: "FROM busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000\nUSER 1000\n"},
		{name: "base/scratch", src: "FROM scratch\nUSER 1000\n"},
		{name: "base/earlier stage", src: "FROM " + pinned + " AS b\nFROM b\nUSER 1000\n"},
		{name: "base/arg default pinned", src: "ARG BASE=" + pinned + "\nFROM ${BASE}\nUSER 1000\n"},
		{name: "base/arg default latest", src: "ARG BASE=busybox\nFROM ${BASE}\nUSER 1000\n", want: []string{"gantry-base-latest"}, line: 2},
		{name: "base/build arg pins it", src: "ARG BASE=busybox\nFROM ${BASE}\nUSER 1000\n",
			opts: Options{BuildArgs: map[string]string{"BASE": pinned}}},
		{name: "base/arg without default", src: "ARG BASE\nFROM ${BASE}\nUSER 1000\n", want: []string{"gantry-base-unpinned"}, line: 2},

		// gantry-secret-env
		{name: "secret/env name", src: df("ENV DB_PASSWORD=hunter2"), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/arg name without value", src: df("ARG GITHUB_TOKEN"), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/ssh key pair", src: df("ARG SSH_KEY"), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/api key pair", src: df("ENV STRIPE_API_KEY=x"), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/global arg", src: "ARG NPM_TOKEN\nFROM " + pinned + "\nUSER 1000\n", want: []string{"gantry-secret-env"}, line: 1},
		{name: "secret/aws key value", src: df("ENV SETTING=AKIAIOSFODNN7EXAMPLE"), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/github token value", src: df("ENV X=ghp_" + strings.Repeat("a1", 18)), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/url with password", src: df("ENV DATABASE=postgres://app:s3cr3t@db:5432/app"), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/label value", src: df("LABEL x=\"-----BEGIN RSA PRIVATE KEY-----\""), want: []string{"gantry-secret-env"}, line: 2},
		{name: "secret/path to a secret is fine", src: df("ENV DB_PASSWORD_FILE=/run/secrets/db")},
		{name: "secret/ordinary env", src: df("ENV PATH=/usr/local/bin:/usr/bin PORT=8080 PWD=/app")},
		{name: "secret/url without password", src: df("ENV UPSTREAM=https://user@example.com/x")},
		{name: "secret/word inside another word", src: df("ENV BYPASS_CACHE=1 TOKENIZER=bpe")},

		// gantry-curl-pipe-sh
		{name: "curl/pipe sh", src: df("RUN curl -fsSL https://get.example.com | sh"), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/wget pipe sudo bash", src: df("RUN wget -qO- https://x.example/i.sh | sudo -E bash -s -- --yes"), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/pipe python", src: df("RUN curl https://bootstrap.pypa.io/get-pip.py | python3"), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/command substitution", src: df(`RUN sh -c "$(curl -fsSL https://x.example/install.sh)"`), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/process substitution", src: df("RUN bash <(curl -s https://x.example/i.sh)"), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/split over lines", src: df("RUN curl -fsSL https://x.example/i.sh \\\n    | sh"), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/heredoc", src: df("RUN <<EOF\nset -e\ncurl -sL https://x.example/i.sh | sh\nEOF"), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/onbuild", src: df("ONBUILD RUN curl -s https://x.example/i.sh | sh"), want: []string{"gantry-curl-pipe-sh"}, line: 2},
		{name: "curl/onbuild harmless", src: df("ONBUILD RUN make")},
		{name: "curl/download then verify", src: df("RUN curl -fsSLo i.sh https://x.example/i.sh && echo \"abc  i.sh\" | sha256sum -c && sh i.sh")},
		{name: "curl/pipe to tar", src: df("RUN curl -fsSL https://x.example/a.tgz | tar xz")},

		// gantry-insecure-run
		{name: "run/security insecure", src: "# syntax=docker/dockerfile:1-labs\n" + df("RUN --security=insecure true"), want: []string{"gantry-insecure-run"}, line: 3},
		{name: "run/network host", src: df("RUN --network=host true"), want: []string{"gantry-insecure-run"}, line: 2},
		{name: "run/network none", src: df("RUN --network=none true")},
		{name: "run/secret mount", src: df("RUN --mount=type=secret,id=npm true")},

		// inline ignores and gantry-ignore-reason
		{name: "ignore/with reason", src: df("# gantry:ignore=gantry-add-url vendor tarball, checksum verified below\nADD https://example.com/a /a")},
		{name: "ignore/several rules", src: df("# gantry:ignore=gantry-insecure-run,gantry-curl-pipe-sh vetted bootstrap\nRUN --network=host curl -s https://x.example/i | sh")},
		{name: "ignore/case-insensitive", src: df("# gantry:ignore=GANTRY-ADD-URL reviewed\nADD https://example.com/a /a")},
		{name: "ignore/without reason is not applied", src: df("# gantry:ignore=gantry-add-url\nADD https://example.com/a /a"),
			want: []string{"gantry-add-url", "gantry-ignore-reason"}, line: 3},
		{name: "ignore/other rule does not hide it", src: df("# gantry:ignore=gantry-secret-env reviewed\nADD https://example.com/a /a"),
			want: []string{"gantry-add-url"}, line: 3},
		{name: "ignore/only the next instruction", src: df("# gantry:ignore=gantry-add-url reviewed\nADD https://example.com/a /a\nADD https://example.com/b /b"),
			want: []string{"gantry-add-url"}, line: 4},
		{name: "ignore/config", src: df("ADD https://example.com/a /a"),
			opts: Options{Ignores: []Ignore{{Rule: "gantry-add-url", Reason: "mirror is trusted"}}}},
		{name: "ignore/config other file", src: df("ADD https://example.com/a /a"),
			opts: Options{Ignores: []Ignore{{Rule: "gantry-add-url", Reason: "x", File: "other/Dockerfile"}}}, want: []string{"gantry-add-url"}, line: 2},
		{name: "severity/off", src: df("ADD https://example.com/a /a"), opts: Options{Severity: map[string]string{"gantry-add-url": "off"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := gantryFindings(t, tc.src, tc.opts)
			if !slices.Equal(rulesOf(got), tc.want) {
				t.Fatalf("rules = %v, want %v\nfindings: %+v\nDockerfile:\n%s", rulesOf(got), tc.want, got, tc.src)
			}
			if len(got) > 0 && got[0].Line != tc.line {
				t.Errorf("line = %d, want %d (%+v)", got[0].Line, tc.line, got[0])
			}
			for _, f := range got {
				if f.Message == "" || f.DocURL == "" || f.File != "Dockerfile" {
					t.Errorf("incomplete finding %+v", f)
				}
			}
		})
	}
}

func TestSecretValueNeverEchoed(t *testing.T) {
	token := "ghp_" + strings.Repeat("Zq", 18)
	got := gantryFindings(t, df("ENV X="+token+"\nENV API_TOKEN="+token), Options{})
	if len(got) != 2 {
		t.Fatalf("want 2 findings, got %+v", got)
	}
	for _, f := range got {
		if strings.Contains(f.Message, token) || strings.Contains(f.Message, "Zq") {
			t.Errorf("finding echoes the secret: %s", f.Message)
		}
	}
}

func TestRulesDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Rules() {
		if seen[r.ID] {
			t.Errorf("duplicate rule id %s", r.ID)
		}
		seen[r.ID] = true
		if !strings.HasPrefix(r.ID, "gantry-") || r.Summary == "" || r.Severity < Info || r.Severity > Error {
			t.Errorf("rule %+v: needs a gantry- id, a summary and a severity", r)
		}
	}
}

func TestSeverityOverride(t *testing.T) {
	for _, tc := range []struct {
		set  string
		want Severity
	}{{"info", Info}, {"warning", Warning}, {"ERROR", Error}} {
		t.Run(tc.set, func(t *testing.T) {
			got := gantryFindings(t, df("ADD https://example.com/a /a"), Options{Severity: map[string]string{"Gantry-Add-URL": tc.set}})
			if len(got) != 1 || got[0].Severity != tc.want {
				t.Fatalf("got %+v, want one finding at %s", got, tc.want)
			}
		})
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{
		{Severity: map[string]string{"x": "loud"}},
		{Severity: map[string]string{"x": "never"}},
		{Ignores: []Ignore{{Rule: "gantry-add-url"}}},
		{Ignores: []Ignore{{Reason: "because"}}},
	} {
		t.Run(fmt.Sprint(o), func(t *testing.T) {
			if _, err := Lint(context.Background(), []File{{Path: "D", Data: []byte(df(""))}}, o); err == nil {
				t.Fatal("bad options accepted")
			}
		})
	}
}
