// Package config loads Gantry's one YAML configuration file.
//
// Precedence, highest first: command-line flag, environment variable
// GANTRY_<PATH> (the key path in upper snake case: log.level → GANTRY_LOG_LEVEL,
// admission.requireDigest → GANTRY_ADMISSION_REQUIRE_DIGEST), the file, the
// default. Unknown keys and bad values are errors at start, each naming the
// key, where it came from, and what is allowed.
//
// Sections are plain structs with `yaml` tags. A leaf field may carry an
// `allowed:"a,b,c"` tag; a section may implement Validator for checks that
// span fields. The annotated reference is examples/gantry.yaml.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/gantry-dev/gantry/internal/files"
)

// Config is the whole file. Each top-level key is one section.
type Config struct {
	Log       Log       `yaml:"log"`
	Registry  Registry  `yaml:"registry"`
	Admission Admission `yaml:"admission"`
	Scanner   Scanner   `yaml:"scanner"`
	Deploy    Deploy    `yaml:"deploy"`
	Notify    Notify    `yaml:"notify"`
	Builder   Builder   `yaml:"builder"`
	Lint      Lint      `yaml:"lint"`
	Signer    Signer    `yaml:"signer"`
	Server    Server    `yaml:"server"`
	Webhooks  Webhooks  `yaml:"webhooks"`
	Queue     Queue     `yaml:"queue"`
	API       API       `yaml:"api"`
	Tokens    Tokens    `yaml:"tokens"`
	Audit     Audit     `yaml:"audit"`
	Dashboard Dashboard `yaml:"dashboard"`
	Pipeline  Pipeline  `yaml:"pipeline"`
	Worker    Worker    `yaml:"worker"`
}

// Log configures Gantry's own log output (log/slog).
type Log struct {
	// Level is the lowest level written.
	Level string `yaml:"level" allowed:"debug,info,warn,error"`
	// Format is text (human) or json (one object per line).
	Format string `yaml:"format" allowed:"text,json"`
}

// Default returns the configuration used for every key the file, the
// environment and the flags leave unset. Defaults are the secure choice.
func Default() *Config {
	return &Config{
		Log:       Log{Level: "info", Format: "text"},
		Registry:  Registry{Timeout: 30 * time.Second},
		Admission: DefaultAdmission(),
		Scanner:   DefaultScanner(),
		Deploy:    DefaultDeploy(),
		Notify:    DefaultNotify(),
		Builder:   DefaultBuilder(),
		Lint:      DefaultLint(),
		Signer:    DefaultSigner(),
		Server:    DefaultServer(),
		Webhooks:  DefaultWebhooks(),
		Queue:     DefaultQueue(),
		API:       DefaultAPI(),
		Tokens:    Tokens{},
		Audit:     DefaultAudit(),
		Dashboard: DefaultDashboard(),
		Pipeline:  DefaultPipeline(),
		Worker:    Worker{},
	}
}

// Validator is implemented by sections with checks beyond `allowed` tags.
type Validator interface {
	Validate() error
}

// MaxFileSize bounds the configuration file: a config is small, and a
// multi-megabyte file is a mistake or an attack.
const MaxFileSize = 1 << 20

// Source says where the values come from.
type Source struct {
	// File is the YAML file path; empty means no file.
	File string
	// Env is the process environment (os.Environ()); only GANTRY_* entries
	// that name a key are read.
	Env []string
	// Flags maps key paths (e.g. "log.level") to flag values that were set.
	Flags map[string]string
}

// Load builds the configuration from defaults, file, environment and flags.
func Load(src Source) (*Config, error) {
	cfg := Default()
	if src.File != "" {
		b, err := readBounded(src.File)
		if err != nil {
			return nil, err
		}
		if err := DecodeStrict(src.File, b, cfg); err != nil {
			return nil, fmt.Errorf("config file %w", err)
		}
	}
	leaves := leafFields(reflect.ValueOf(cfg).Elem(), "")
	byPath := make(map[string]leaf, len(leaves))
	for _, l := range leaves {
		byPath[l.path] = l
	}
	// The variable names are made only when the environment holds a
	// GANTRY_ variable at all: every command loads the configuration at
	// start, most with none set.
	var byEnv map[string]leaf
	for _, kv := range src.Env {
		if !strings.HasPrefix(kv, "GANTRY_") {
			continue
		}
		if byEnv == nil {
			byEnv = make(map[string]leaf, len(leaves))
			for _, l := range leaves {
				byEnv[l.envName()] = l
			}
		}
		name, value, _ := strings.Cut(kv, "=")
		l, ok := byEnv[name]
		if !ok {
			continue
		}
		if err := l.set(value); err != nil {
			return nil, fmt.Errorf("environment %s (key %s): %w", name, l.path, err)
		}
	}
	paths := make([]string, 0, len(src.Flags))
	for p := range src.Flags {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		l, ok := byPath[p]
		if !ok {
			return nil, fmt.Errorf("flag for unknown key %q", p)
		}
		if err := l.set(src.Flags[p]); err != nil {
			return nil, fmt.Errorf("flag for key %s: %w", p, err)
		}
	}
	if err := validate(reflect.ValueOf(cfg).Elem(), leaves); err != nil {
		return nil, err
	}
	return cfg, nil
}

func readBounded(path string) ([]byte, error) {
	b, err := files.ReadBounded(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return b, nil
}

// DecodeStrict decodes one YAML document into the struct pointer into. It
// checks every key against the struct before decoding, so that
// an unknown key is reported with its full path, its line and the keys that
// are allowed there, rather than as a Go type name.
func DecodeStrict(name string, b []byte, into any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file: all defaults
	}
	if err := checkKeys(name, doc.Content[0], reflect.TypeOf(into).Elem(), ""); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(into); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("%s: %s", name, strings.Join(te.Errors, "; "))
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: more than one YAML document", name)
	}
	return nil
}

func checkKeys(file string, n *yaml.Node, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(time.Time{}) {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil
			}
			return fmt.Errorf("%s:%d: key %s must be a mapping", file, n.Line, orRoot(prefix))
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			path := join(prefix, k.Value)
			if !ok {
				return fmt.Errorf("%s:%d: unknown key %s (allowed under %s: %s)",
					file, k.Line, path, orRoot(prefix), strings.Join(sortedKeys(fields), ", "))
			}
			if err := checkKeys(file, v, f.Type, path); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for _, item := range n.Content {
				if err := checkKeys(file, item, t.Elem(), prefix+"[]"); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := checkKeys(file, n.Content[i+1], t.Elem(), join(prefix, n.Content[i].Value)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func orRoot(p string) string {
	if p == "" {
		return "the top level"
	}
	return p
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			// Inlined struct: its keys sit at this level.
			for k, sub := range yamlFields(f.Type) {
				sub.Index = append(append([]int{}, f.Index...), sub.Index...)
				out[k] = sub
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// leaf is one settable scalar key.
type leaf struct {
	path    string
	value   reflect.Value
	allowed []string
}

var durationType = reflect.TypeOf(time.Duration(0))

// leafFields lists the scalar keys below v (structs are walked; lists of
// strings are leaves; maps and lists of structs can only come from the file).
func leafFields(v reflect.Value, prefix string) []leaf {
	var out []leaf
	fields := yamlFields(v.Type())
	for _, name := range sortedKeys(fields) {
		f := fields[name]
		fv := v.FieldByIndex(f.Index)
		path := join(prefix, name)
		switch {
		case f.Type.Kind() == reflect.Struct:
			out = append(out, leafFields(fv, path)...)
		case isScalar(f.Type) || (f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String):
			var allowed []string
			if a := f.Tag.Get("allowed"); a != "" {
				allowed = strings.Split(a, ",")
			}
			out = append(out, leaf{path: path, value: fv, allowed: allowed})
		}
	}
	return out
}

func isScalar(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
		return true
	}
	return false
}

// envName maps a key path to its environment variable:
// admission.requireDigest → GANTRY_ADMISSION_REQUIRE_DIGEST.
func (l leaf) envName() string {
	var b strings.Builder
	b.WriteString("GANTRY")
	for _, part := range strings.Split(l.path, ".") {
		b.WriteByte('_')
		for i, r := range part {
			if unicode.IsUpper(r) && i > 0 {
				b.WriteByte('_')
			}
			if r == '-' {
				r = '_'
			}
			b.WriteRune(unicode.ToUpper(r))
		}
	}
	return b.String()
}

// set parses s into the leaf's type.
func (l leaf) set(s string) error {
	v := l.value
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 30s, 5m, 1h)", s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice:
		var items []string
		for _, item := range strings.Split(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from a string")
	}
	return nil
}

// validate checks `allowed` tags on every leaf, then each section's own
// Validate.
func validate(root reflect.Value, leaves []leaf) error {
	var errs []error
	for _, l := range leaves {
		if len(l.allowed) == 0 {
			continue
		}
		vals := []string{fmt.Sprint(l.value.Interface())}
		if l.value.Kind() == reflect.Slice {
			vals = l.value.Interface().([]string)
		}
		for _, s := range vals {
			if !contains(l.allowed, s) {
				errs = append(errs, fmt.Errorf("key %s: %q is not allowed (allowed: %s)", l.path, s, strings.Join(l.allowed, ", ")))
			}
		}
	}
	t := root.Type()
	for i := range t.NumField() {
		fv := root.Field(i)
		if fv.CanAddr() {
			if v, ok := fv.Addr().Interface().(Validator); ok {
				if err := v.Validate(); err != nil {
					name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
					errs = append(errs, fmt.Errorf("section %s: %w", name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// EnvNames lists every environment variable the configuration reads, with
// its key path, for documentation and `gantry config env`.
func EnvNames() map[string]string {
	out := map[string]string{}
	for _, l := range leafFields(reflect.ValueOf(Default()).Elem(), "") {
		out[l.envName()] = l.path
	}
	return out
}
