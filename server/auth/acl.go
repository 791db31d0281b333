package auth

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"github.com/stompbox/stompbox/broker"
)

// ACL is a broker.Authorizer reading its rules from a YAML file:
//
//	rules:
//	  - users: [alice]        # who: users, roles, anonymous: true (any of them);
//	    roles: [admin]        #   none of them: every authenticated client
//	    vhosts: ["/"]         # where: absent means every virtual host
//	    publish: ["/topic/chat.#", "/queue/orders"]
//	    subscribe: ["/topic/#", "/queue/orders"]
//
// Everything not granted is denied. A rule applies to a principal it
// selects; "every authenticated client" excludes anonymous ones, which
// only "anonymous: true" selects (and users or roles never do). Patterns
// are those of Covers. Safe for concurrent use; Reload swaps the rules in
// place.
type ACL struct {
	path     string // immutable
	rules    atomic.Pointer[[]aclRule]
	reloadMu sync.Mutex // serializes Reload
}

// aclRule is one parsed rule. Immutable.
type aclRule struct {
	users, roles []string
	anonymous    bool
	everyone     bool     // selects no one in particular: every non-anonymous principal
	vhosts       []string // nil: every virtual host
	publish      []string
	subscribe    []string
}

// LoadACL reads the rules file at path. Errors name path:line.
func LoadACL(path string) (*ACL, error) {
	a := &ACL{path: path}
	rules, err := readACL(path)
	if err != nil {
		return nil, err
	}
	a.rules.Store(&rules)
	return a, nil
}

// Reload rereads the rules file. On error the rules loaded before stay in
// force.
func (a *ACL) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	rules, err := readACL(a.path)
	if err != nil {
		return err
	}
	a.rules.Store(&rules)
	return nil
}

// Len returns how many rules are loaded.
func (a *ACL) Len() int { return len(*a.rules.Load()) }

// String names the file.
func (a *ACL) String() string { return "ACL file " + a.path }

// AllowHost reports whether p may use vhost: some rule that applies to p
// allows vhost, and p's own VHosts (a token's claim), if any, list it.
func (a *ACL) AllowHost(p *broker.Principal, vhost string) bool {
	if p == nil || !principalAllowsHost(p, vhost) {
		return false
	}
	// A token that grants destinations itself may use the hosts its own
	// vhosts claim allows, rule or no rule.
	if len(p.Publish) > 0 || len(p.Subscribe) > 0 {
		return true
	}
	rules := *a.rules.Load()
	for i := range rules {
		if r := &rules[i]; r.appliesTo(p) && r.allowsHost(vhost) {
			return true
		}
	}
	return false
}

// Allow reports whether p may perform act on destination in vhost: a rule
// that applies to p in vhost, or p's own Publish/Subscribe patterns, cover
// destination; and p's own VHosts, if any, list vhost. It allocates
// nothing.
func (a *ACL) Allow(p *broker.Principal, vhost string, act broker.Action, destination string) bool {
	if p == nil || !principalAllowsHost(p, vhost) {
		return false
	}
	rules := *a.rules.Load()
	for i := range rules {
		r := &rules[i]
		if r.appliesTo(p) && r.allowsHost(vhost) && anyCovers(patternsFor(r.publish, r.subscribe, act), destination) {
			return true
		}
	}
	return Grant(p, act, destination)
}

// principalAllowsHost applies the credentials' own limit on virtual hosts.
func principalAllowsHost(p *broker.Principal, vhost string) bool {
	return p.VHosts == nil || slices.Contains(p.VHosts, vhost)
}

func (r *aclRule) appliesTo(p *broker.Principal) bool {
	if p.Anonymous {
		return r.anonymous
	}
	if r.everyone || slices.Contains(r.users, p.Name) {
		return true
	}
	for _, role := range p.Roles {
		if slices.Contains(r.roles, role) {
			return true
		}
	}
	return false
}

func (r *aclRule) allowsHost(vhost string) bool {
	return r.vhosts == nil || slices.Contains(r.vhosts, vhost)
}

func readACL(path string) ([]aclRule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ACL file: %w", err)
	}
	return parseACL(path, data)
}

// parseACL parses a rules file's contents; name is used in errors. It is
// pure, so fuzzing drives it directly.
func parseACL(name string, data []byte) ([]aclRule, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(name, err)
	}
	rules := []aclRule{}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return rules, nil // an empty file: no rules, everything denied
	}
	top := deref(doc.Content[0])
	if isNull(top) {
		return rules, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping with the key rules", name, top.Line)
	}
	var list *yaml.Node
	err := eachKey(name, top, func(key string, k, v *yaml.Node) error {
		if key != "rules" {
			return fmt.Errorf("%s:%d: unknown key %q (want rules)", name, k.Line, key)
		}
		list = v
		return nil
	})
	if err != nil || list == nil || isNull(list) {
		return rules, err
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: rules must be a list", name, list.Line)
	}
	for _, item := range list.Content {
		r, err := parseRule(name, deref(item))
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(name string, n *yaml.Node) (aclRule, error) {
	var r aclRule
	if n.Kind != yaml.MappingNode {
		return r, fmt.Errorf("%s:%d: a rule must be a mapping", name, n.Line)
	}
	err := eachKey(name, n, func(key string, k, v *yaml.Node) error {
		var err error
		switch key {
		case "users":
			r.users, err = stringSeq(name, key, v, checkUserName)
		case "roles":
			r.roles, err = stringSeq(name, key, v, checkRole)
		case "vhosts":
			r.vhosts, err = stringSeq(name, key, v, nil)
		case "publish":
			r.publish, err = patternSeq(name, key, v)
		case "subscribe":
			r.subscribe, err = patternSeq(name, key, v)
		case "anonymous":
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
				return fmt.Errorf("%s:%d: anonymous must be true or false", name, v.Line)
			}
			if err = v.Decode(&r.anonymous); err != nil {
				return fmt.Errorf("%s:%d: anonymous: %w", name, v.Line, err)
			}
		default:
			return fmt.Errorf("%s:%d: unknown key %q in rule (want users, roles, anonymous, vhosts, publish, subscribe)", name, k.Line, key)
		}
		return err
	})
	r.everyone = len(r.users) == 0 && len(r.roles) == 0 && !r.anonymous
	return r, err
}

// eachKey calls f for each key of a mapping, refusing duplicate and
// non-scalar keys.
func eachKey(name string, m *yaml.Node, f func(key string, k, v *yaml.Node) error) error {
	seen := make(map[string]int)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := deref(m.Content[i]), deref(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s:%d: keys must be plain words", name, k.Line)
		}
		if line, dup := seen[k.Value]; dup {
			return fmt.Errorf("%s:%d: key %q already given on line %d", name, k.Line, k.Value, line)
		}
		seen[k.Value] = k.Line
		if err := f(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

// stringSeq reads a non-empty list of non-empty strings; check, if set,
// vets each one. An empty list is refused rather than read as "nobody" or
// "everywhere": either reading would surprise someone.
func stringSeq(name, key string, n *yaml.Node, check func(string) error) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: %s must be a list", name, n.Line, key)
	}
	if len(n.Content) == 0 {
		return nil, fmt.Errorf("%s:%d: %s is an empty list; leave the key out instead", name, n.Line, key)
	}
	out := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		item = deref(item)
		if item.Kind != yaml.ScalarNode || isNull(item) || item.Value == "" {
			return nil, fmt.Errorf("%s:%d: %s must hold non-empty strings", name, item.Line, key)
		}
		if check != nil {
			if err := check(item.Value); err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %w", name, item.Line, key, err)
			}
		}
		out = append(out, item.Value)
	}
	return out, nil
}

// patternSeq reads a list of destination patterns (an empty list is
// allowed: a rule may grant only virtual hosts).
func patternSeq(name, key string, n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		return nil, nil
	}
	pats, err := stringSeq(name, key, n, nil)
	if err != nil {
		return nil, err
	}
	for i, p := range pats {
		if !validPattern(p) {
			return nil, fmt.Errorf("%s:%d: %s pattern %q: want #, or /topic/ or /queue/ and dot-separated segments where * and # stand alone",
				name, deref(n.Content[i]).Line, key, p)
		}
	}
	return pats, nil
}

// deref follows an alias to its anchored node.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// yamlError rewrites the parser's "yaml: line N: msg" as "name:N: msg", the
// form editors and the users file use.
func yamlError(name string, err error) error {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, perr := strconv.Atoi(num); perr == nil {
				return &posError{pos: name + ":" + strconv.Itoa(line), msg: text, err: err}
			}
		}
	}
	return &posError{pos: name, msg: strings.TrimPrefix(msg, "yaml: "), err: err}
}

// posError is an error at a file position that keeps the error it came
// from for errors.Is and errors.As.
type posError struct {
	pos, msg string
	err      error
}

func (e *posError) Error() string { return e.pos + ": " + e.msg }
func (e *posError) Unwrap() error { return e.err }

var _ broker.Authorizer = (*ACL)(nil)
