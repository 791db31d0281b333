package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
)

// SourceKind says which layer set an option.
type SourceKind uint8

// The layers, lowest precedence first.
const (
	FromDefault SourceKind = iota
	FromFile
	FromEnv
	FromFlag
)

// Source is where an option's effective value came from.
type Source struct {
	Kind SourceKind
	File string // FromFile
	Line int    // FromFile
	Name string // FromEnv: the variable; FromFlag: the flag without its dash
}

func (s Source) String() string {
	switch s.Kind {
	case FromFile:
		return fmt.Sprintf("%s:%d", s.File, s.Line)
	case FromEnv:
		return "env " + s.Name
	case FromFlag:
		return "flag -" + s.Name
	}
	return "default"
}

// Loaded is the outcome of Load.
type Loaded struct {
	Config Config
	// Sources says, by option key, where each value came from.
	Sources map[string]Source
	// File is the configuration file read ("" if none).
	File string
	// PrintConfig is set by -print-config: print the effective
	// configuration and exit.
	PrintConfig bool
	// UnknownEnv lists STOMPBOX_* variables that name no option. They are
	// not errors: Kubernetes sets STOMPBOX_SERVICE_HOST and the like for a
	// Service named stompbox. The caller warns about them.
	UnknownEnv []string
}

// ConfigEnv names the configuration file when -config is not given.
const ConfigEnv = EnvPrefix + "CONFIG"

// The variables of `stompbox ctl`, the admin API's client, besides
// STOMPBOX_ADMIN_TOKEN (admin.token): set in an operator's shell beside
// the broker's own, they name no option of the broker and are not worth
// a warning.
const (
	CtlURLEnv      = EnvPrefix + "ADMIN_URL"
	CtlPasswordEnv = EnvPrefix + "ADMIN_PASSWORD"
)

// Load builds the configuration from args (without the program name), the
// environment (as os.Environ returns it) and the file named by -config or
// STOMPBOX_CONFIG, read with readFile. usage gets -h output and flag
// errors. Every problem found is reported, each naming where the value
// came from; -h returns flag.ErrHelp. A configuration that was read but
// does not validate is returned with its error (*ValidationError), for
// tools that need only part of it (stompbox journal needs journal.dir).
func Load(args, environ []string, readFile func(string) ([]byte, error), usage io.Writer) (*Loaded, error) {
	opts := Options()
	l := &Loaded{Config: Default(), Sources: make(map[string]Source, len(opts))}
	fs := flag.NewFlagSet("stompbox", flag.ContinueOnError)
	fs.SetOutput(usage)
	configFile := fs.String("config", "", "YAML configuration file (env "+ConfigEnv+")")
	fs.BoolVar(&l.PrintConfig, "print-config", false, "print the effective configuration as YAML, each value with where it came from, and exit")
	defaults := Default()
	flagValues := make([]*rawValue, len(opts))
	for i, o := range opts {
		def := o.field(&defaults)
		flagValues[i] = &rawValue{isBool: def.Kind() == reflect.Bool}
		help := fmt.Sprintf("%s (%s: %s; env %s)", o.Help, o.Key, formatFlag(def), o.Env)
		fs.Var(flagValues[i], o.Flag, help)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (options are flags, e.g. -listen :61613)", fs.Arg(0))
	}

	env := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			env[k] = v
		}
	}
	l.File = *configFile
	if l.File == "" {
		l.File = env[ConfigEnv]
	}
	var errs []error
	if l.File != "" {
		data, err := readFile(l.File)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		errs = append(errs, applyYAML(&l.Config, l.Sources, l.File, data)...)
	}
	known := map[string]bool{ConfigEnv: true, CtlURLEnv: true, CtlPasswordEnv: true}
	for _, o := range opts {
		known[o.Env] = true
		if v, ok := env[o.Env]; ok {
			errs = append(errs, l.set(o, v, Source{Kind: FromEnv, Name: o.Env}))
		}
	}
	for k := range env {
		if !known[k] {
			l.UnknownEnv = append(l.UnknownEnv, k)
		}
	}
	slices.Sort(l.UnknownEnv)
	for i, o := range opts {
		if flagValues[i].set {
			errs = append(errs, l.set(o, flagValues[i].value, Source{Kind: FromFlag, Name: o.Flag}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return l, &ValidationError{err}
	}
	return l, nil
}

// ValidationError is Load's error for a configuration that was read but
// is not valid for a broker to start.
type ValidationError struct{ Err error }

func (e *ValidationError) Error() string { return e.Err.Error() }

// Unwrap returns the validation problems.
func (e *ValidationError) Unwrap() error { return e.Err }

// set applies one textual value and records its source.
func (l *Loaded) set(o option, value string, src Source) error {
	if err := setText(o.field(&l.Config), value); err != nil {
		return fmt.Errorf("%s: %s: %w", src, o.Key, err)
	}
	l.Sources[o.Key] = src
	return nil
}

// SourceOf returns where the option with key got its value.
func (l *Loaded) SourceOf(key string) Source { return l.Sources[key] }

// rawValue is a flag's text, applied after the file and the environment.
type rawValue struct {
	value  string
	set    bool
	isBool bool
}

func (r *rawValue) String() string { return r.value }

func (r *rawValue) Set(s string) error {
	r.value, r.set = s, true
	return nil
}

func (r *rawValue) IsBoolFlag() bool { return r.isBool }
