package config

import (
	"reflect"
	"strings"
)

// option is one setting: a leaf field of Config.
type option struct {
	Key  string // YAML path, e.g. "journal.sync_interval"
	Flag string // command-line name without the dash
	Env  string // environment variable
	Help string
	// Secret options (tokens) are never printed (Print).
	Secret bool
	index  []int // field path in Config
}

// EnvPrefix starts every environment variable of stompbox.
const EnvPrefix = "STOMPBOX_"

// envName is the environment variable of a flag: -journal-dir is
// STOMPBOX_JOURNAL_DIR.
func envName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Options lists every setting in declaration order.
func Options() []option {
	var opts []option
	walk(reflect.TypeFor[Config](), "", nil, &opts)
	return opts
}

func walk(t reflect.Type, prefix string, index []int, opts *[]option) {
	for i := range t.NumField() {
		f := t.Field(i)
		key := prefix + f.Tag.Get("yaml")
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			walk(f.Type, key+".", idx, opts)
			continue
		}
		flag := f.Tag.Get("flag")
		*opts = append(*opts, option{Key: key, Flag: flag, Env: envName(flag), Help: f.Tag.Get("help"),
			Secret: f.Tag.Get("secret") == "true", index: idx})
	}
}

// field is the option's value within c.
func (o option) field(c *Config) reflect.Value {
	return reflect.ValueOf(c).Elem().FieldByIndex(o.index)
}
