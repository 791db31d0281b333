package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// applyYAML sets the options the file names, walking the document's node
// tree rather than decoding into the struct, so that every unknown key,
// duplicate and bad value is reported with its line.
func applyYAML(c *Config, sources map[string]Source, file string, data []byte) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []error{fmt.Errorf("%s: %w", file, err)}
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	y := yamlApplier{file: file, sources: sources}
	y.mapping(doc.Content[0], reflect.ValueOf(c).Elem(), "")
	return y.errs
}

type yamlApplier struct {
	file    string
	sources map[string]Source
	errs    []error
}

func (y *yamlApplier) fail(n *yaml.Node, key, format string, args ...any) {
	where := fmt.Sprintf("%s:%d", y.file, n.Line)
	if key != "" {
		where += ": " + key
	}
	y.errs = append(y.errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
}

// mapping applies a YAML mapping to the struct v, whose keys start with
// prefix.
func (y *yamlApplier) mapping(n *yaml.Node, v reflect.Value, prefix string) {
	section := strings.TrimSuffix(prefix, ".")
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			return // "journal:" with nothing under it
		}
		y.fail(n, section, "want a mapping of keys (got %s)", describe(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := prefix + k.Value
		if seen[k.Value] {
			y.fail(k, key, "duplicate key")
			continue
		}
		seen[k.Value] = true
		field, ok := fieldByTag(v, k.Value)
		if !ok {
			y.fail(k, key, "unknown key (valid here: %s)", strings.Join(tags(v.Type()), ", "))
			continue
		}
		if field.Kind() == reflect.Struct {
			y.mapping(val, field, key+".")
			continue
		}
		if err := setNode(field, val); err != nil {
			y.fail(val, key, "%v", err)
			continue
		}
		y.sources[key] = Source{Kind: FromFile, File: y.file, Line: val.Line}
	}
}

// setNode sets a leaf option from its YAML value.
func setNode(field reflect.Value, n *yaml.Node) error {
	if rules, ok := field.Addr().Interface().(*HistoryRules); ok {
		return setHistoryNode(rules, n)
	}
	if list, ok := field.Addr().Interface().(*[]string); ok {
		switch {
		case n.Tag == "!!null":
			*list = nil
		case n.Kind == yaml.SequenceNode:
			items := make([]string, 0, len(n.Content))
			for _, item := range n.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("list items must be single values (got %s)", describe(item))
				}
				items = append(items, item.Value)
			}
			if len(items) == 0 {
				items = nil // "[]" is no list, as the default is
			}
			*list = items
		default:
			return fmt.Errorf("want a list, e.g. [\"https://app.example.com\"] (got %s)", describe(n))
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%w (got %s)", errNotScalar, describe(n))
	}
	if n.Tag == "!!null" {
		if field.Kind() == reflect.String {
			field.SetString("")
			return nil
		}
		return errors.New("missing value")
	}
	return setText(field, n.Value)
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return fmt.Sprintf("%q", n.Value)
}

func fieldByTag(v reflect.Value, tag string) (reflect.Value, bool) {
	for i := range v.NumField() {
		if v.Type().Field(i).Tag.Get("yaml") == tag {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tags(t reflect.Type) []string {
	out := make([]string, t.NumField())
	for i := range out {
		out[i] = t.Field(i).Tag.Get("yaml")
	}
	return out
}
