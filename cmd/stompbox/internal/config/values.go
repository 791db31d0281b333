package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as Go writes durations: "10s",
// "1m30s", "250ms"; "0" is zero.
type Duration time.Duration

// ByteSize is a size in bytes: a plain integer, or a number with a unit:
// KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, GB (powers of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	size   int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"B", 1},
}

func parseByteSize(s string) (ByteSize, error) {
	num, unit := s, int64(1)
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, unit = strings.TrimSpace(rest), u.size
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (want bytes, or a whole number with KiB, MiB, GiB, TiB, kB, MB or GB)", s)
	}
	if n > (1<<62)/unit {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(n * unit), nil
}

// String writes the size in the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range byteUnits[:4] {
		if b != 0 && int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

func (d Duration) String() string { return time.Duration(d).String() }

// errNotScalar is the error for a YAML value of the wrong shape.
var errNotScalar = errors.New("want a single value")

// setText parses s into the option's field: the form flags and
// environment variables use (lists comma-separated).
func setText(v reflect.Value, s string) error {
	switch p := v.Addr().Interface().(type) {
	case *string:
		*p = s
	case *[]string:
		*p = nil
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*p = append(*p, item)
			}
		}
	case *HistoryRules:
		rules, err := parseHistoryRules(s)
		if err != nil {
			return err
		}
		*p = rules
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", s)
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		*p = n
	case *float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		*p = f
	case *Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. 10s, 500ms, 1m30s)", s)
		}
		*p = Duration(d)
	case *ByteSize:
		b, err := parseByteSize(s)
		if err != nil {
			return err
		}
		*p = b
	default:
		return fmt.Errorf("config: unsupported option type %s", v.Type())
	}
	return nil
}

// formatYAML writes the field's value as YAML, the inverse of the file
// parser.
func formatYAML(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case string:
		return strconv.Quote(x)
	case []string:
		quoted := make([]string, len(x))
		for i, s := range x {
			quoted[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case Duration:
		return x.String()
	case ByteSize:
		return x.String()
	case HistoryRules:
		return x.yaml()
	}
	return fmt.Sprint(v.Interface())
}

// formatFlag writes the value as a flag or environment variable takes it.
func formatFlag(v reflect.Value) string {
	if list, ok := v.Interface().([]string); ok {
		return strings.Join(list, ",")
	}
	if s, ok := v.Interface().(string); ok {
		return s
	}
	if rules, ok := v.Interface().(HistoryRules); ok {
		return rules.flag()
	}
	return formatYAML(v)
}
