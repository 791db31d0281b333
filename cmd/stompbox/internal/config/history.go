package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/stompbox/stompbox/broker"
)

// Topics configures topics: their history (docs/compliance.md, "Topic
// history and resume").
type Topics struct {
	History         HistoryRules `yaml:"history" flag:"topic-history" help:"topic history rules, first match wins: in YAML a list of {pattern: \"/topic/chat.#\", size: 1000, max_age: 24h}; as flag and env pattern=size[/max_age], comma-separated; size > 0, max_age 0 = no age limit; empty: no topic keeps history"`
	HistoryMaxBytes ByteSize     `yaml:"history_max_bytes" flag:"topic-history-max-bytes" help:"bytes all topic histories may retain together; past it a publish evicts its topic's oldest messages"`
}

// HistoryRule is one entry of topics.history.
type HistoryRule struct {
	Pattern string
	Size    int
	MaxAge  Duration
}

// HistoryRules is topics.history: a YAML list of mappings, or in flags and
// environment variables pattern=size[/max_age] items separated by commas.
type HistoryRules []HistoryRule

// setHistoryNode reads topics.history from YAML.
func setHistoryNode(p *HistoryRules, n *yaml.Node) error {
	if n.Tag == "!!null" {
		*p = nil
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("want a list of {pattern, size, max_age} (got %s)", describe(n))
	}
	var rules HistoryRules
	for i, item := range n.Content {
		if item.Kind != yaml.MappingNode {
			return fmt.Errorf("item %d: want a mapping {pattern, size, max_age} (got %s)", i, describe(item))
		}
		var r HistoryRule
		seen := map[string]bool{}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], item.Content[j+1]
			if seen[k.Value] {
				return fmt.Errorf("item %d: duplicate key %s", i, k.Value)
			}
			seen[k.Value] = true
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("item %d: %s: want a single value (got %s)", i, k.Value, describe(v))
			}
			var err error
			switch k.Value {
			case "pattern":
				r.Pattern = v.Value
			case "size":
				r.Size, err = strconv.Atoi(v.Value)
			case "max_age":
				var d time.Duration
				d, err = time.ParseDuration(v.Value)
				r.MaxAge = Duration(d)
			default:
				return fmt.Errorf("item %d: unknown key %s (valid: pattern, size, max_age)", i, k.Value)
			}
			if err != nil {
				return fmt.Errorf("item %d: invalid %s %q", i, k.Value, v.Value)
			}
		}
		if !seen["pattern"] || !seen["size"] {
			return fmt.Errorf("item %d: pattern and size are required", i)
		}
		rules = append(rules, r)
	}
	*p = rules
	return nil
}

// Broker is the rules as broker.Config.TopicHistory takes them.
func (rs HistoryRules) Broker() []broker.HistoryRule {
	var out []broker.HistoryRule
	for _, r := range rs {
		out = append(out, broker.HistoryRule{Pattern: r.Pattern, Size: r.Size, MaxAge: time.Duration(r.MaxAge)})
	}
	return out
}

// parseHistoryRules reads the flag and environment form.
func parseHistoryRules(s string) (HistoryRules, error) {
	var rules HistoryRules
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		pattern, rest, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("invalid history rule %q (want pattern=size[/max_age], e.g. /topic/chat.#=1000/24h)", item)
		}
		size, age, hasAge := strings.Cut(rest, "/")
		n, err := strconv.Atoi(size)
		if err != nil {
			return nil, fmt.Errorf("invalid size in history rule %q", item)
		}
		r := HistoryRule{Pattern: pattern, Size: n}
		if hasAge {
			d, err := time.ParseDuration(age)
			if err != nil {
				return nil, fmt.Errorf("invalid max_age in history rule %q", item)
			}
			r.MaxAge = Duration(d)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// yaml writes the rules as a YAML flow list, read back by setHistoryNode.
func (rs HistoryRules) yaml() string {
	items := make([]string, len(rs))
	for i, r := range rs {
		items[i] = fmt.Sprintf("{pattern: %s, size: %d, max_age: %s}", strconv.Quote(r.Pattern), r.Size, r.MaxAge)
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// flag writes the rules in the flag form.
func (rs HistoryRules) flag() string {
	items := make([]string, len(rs))
	for i, r := range rs {
		items[i] = r.Pattern + "=" + strconv.Itoa(r.Size) + "/" + r.MaxAge.String()
	}
	return strings.Join(items, ",")
}
