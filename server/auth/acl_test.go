package auth

import (
	"os"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
)

const testACL = `# stompbox ACL
rules:
  - users: [alice]
    roles: [admin]
    publish: ["/topic/#", "/queue/#"]
    subscribe: ["#"]
  - roles: [chat]
    vhosts: ["/"]
    publish: ["/topic/chat.#"]
    subscribe: ["/topic/chat.*", "/queue/orders"]
  - users: [bob]
    vhosts: [tenant-a]
    publish: [/queue/orders.*]
  - anonymous: true
    vhosts: ["/"]
    subscribe: ["/topic/public.#"]
  - vhosts: ["/"]             # every authenticated client may connect to "/"
`

func loadACLText(t testing.TB, text string) *ACL {
	t.Helper()
	a, err := LoadACL(writeFile(t, "acl.yaml", []byte(text)))
	if err != nil {
		t.Fatalf("LoadACL: %v", err)
	}
	return a
}

func TestACLAllow(t *testing.T) {
	a := loadACLText(t, testACL)
	var (
		alice  = &broker.Principal{Name: "alice"}
		admin  = &broker.Principal{Name: "root", Roles: []string{"ops", "admin"}}
		chat   = &broker.Principal{Name: "carol", Roles: []string{"chat"}}
		bob    = &broker.Principal{Name: "bob"}
		anon   = &broker.Principal{Name: "anonymous", Anonymous: true}
		dave   = &broker.Principal{Name: "dave"}
		tokenP = &broker.Principal{Name: "svc", Publish: []string{"/queue/jobs"}, Subscribe: []string{"/topic/metrics.#"}, VHosts: []string{"/"}}
		// A user named "anonymous" is not the anonymous client.
		fakeAnon = &broker.Principal{Name: "anonymous"}
		// A principal limited by its token to another vhost.
		limited = &broker.Principal{Name: "alice", VHosts: []string{"tenant-b"}}
	)
	pub, sub := broker.ActionPublish, broker.ActionSubscribe
	tests := []struct {
		name  string
		p     *broker.Principal
		vhost string
		a     broker.Action
		dest  string
		want  bool
	}{
		{"user rule, any vhost", alice, "tenant-a", pub, "/topic/x.y", true},
		{"user rule: queue", alice, "/", pub, "/queue/orders", true},
		{"user rule: # subscribes anything", alice, "/", sub, "/presence/room1", true},
		{"role rule", admin, "/", pub, "/queue/anything", true},
		{"chat role publishes chat", chat, "/", pub, "/topic/chat.room1.msgs", true},
		{"chat role: not other topics", chat, "/", pub, "/topic/news", false},
		{"chat role: not in another vhost", chat, "tenant-a", pub, "/topic/chat.room1", false},
		{"chat role subscribes one level", chat, "/", sub, "/topic/chat.room1", true},
		{"chat role subscribes chat.* as a pattern", chat, "/", sub, "/topic/chat.*", true},
		{"chat role may not subscribe chat.#", chat, "/", sub, "/topic/chat.#", false},
		{"chat role may not subscribe #", chat, "/", sub, "/topic/#", false},
		{"chat role: subscribe is not publish", chat, "/", pub, "/queue/orders", false},
		{"chat role: queue subscribe", chat, "/", sub, "/queue/orders", true},
		{"bob in his vhost", bob, "tenant-a", pub, "/queue/orders.eu", true},
		{"bob: not the bare queue", bob, "tenant-a", pub, "/queue/orders", false},
		{"bob: not in /", bob, "/", pub, "/queue/orders.eu", false},
		{"anonymous reads public", anon, "/", sub, "/topic/public.news", true},
		{"anonymous may not publish", anon, "/", pub, "/topic/public.news", false},
		{"anonymous gets no user or everyone rules", anon, "/", sub, "/topic/chat.x", false},
		{"a user named anonymous is not anonymous", fakeAnon, "/", sub, "/topic/public.news", false},
		{"no rule grants dave anything", dave, "/", pub, "/topic/x", false},
		{"token grant", tokenP, "/", pub, "/queue/jobs", true},
		{"token grant, subscribe pattern", tokenP, "/", sub, "/topic/metrics.#", true},
		{"token grant covers only its own", tokenP, "/", sub, "/topic/#", false},
		{"token grant: wrong action", tokenP, "/", pub, "/topic/metrics.cpu", false},
		{"token grant outside its vhosts", tokenP, "tenant-a", pub, "/queue/jobs", false},
		{"token vhosts limit the rules too", limited, "/", pub, "/topic/x", false},
		{"token vhosts, inside", limited, "tenant-b", pub, "/topic/x", true},
		{"nil principal", nil, "/", pub, "/topic/x", false},
		{"unknown action", alice, "/", broker.Action(9), "/topic/x", false},
		{"malformed destination", alice, "/", pub, "/topic/a..b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Allow(tt.p, tt.vhost, tt.a, tt.dest); got != tt.want {
				t.Errorf("Allow(%+v, %q, %v, %q) = %v, want %v", tt.p, tt.vhost, tt.a, tt.dest, got, tt.want)
			}
		})
	}
}

func TestACLAllowHost(t *testing.T) {
	a := loadACLText(t, testACL)
	tests := []struct {
		name  string
		p     *broker.Principal
		vhost string
		want  bool
	}{
		{"everyone rule: /", &broker.Principal{Name: "dave"}, "/", true},
		{"no rule for dave elsewhere", &broker.Principal{Name: "dave"}, "tenant-a", false},
		{"bob's rule", &broker.Principal{Name: "bob"}, "tenant-a", true},
		{"alice: rule without vhosts", &broker.Principal{Name: "alice"}, "anything", true},
		{"anonymous in /", &broker.Principal{Anonymous: true, Name: "anonymous"}, "/", true},
		{"anonymous elsewhere", &broker.Principal{Anonymous: true, Name: "anonymous"}, "tenant-a", false},
		{"token limits", &broker.Principal{Name: "alice", VHosts: []string{"tenant-b"}}, "tenant-a", false},
		{"token allows", &broker.Principal{Name: "alice", VHosts: []string{"tenant-b"}}, "tenant-b", true},
		{"token allows, no rule does", &broker.Principal{Name: "dave", VHosts: []string{"tenant-a"}}, "tenant-a", false},
		{"token with its own grants", &broker.Principal{Name: "dave", VHosts: []string{"tenant-a"}, Subscribe: []string{"/topic/x"}}, "tenant-a", true},
		{"token grants, other host", &broker.Principal{Name: "dave", VHosts: []string{"tenant-a"}, Publish: []string{"/topic/x"}}, "tenant-b", false},
		{"token with empty vhosts", &broker.Principal{Name: "alice", VHosts: []string{}}, "/", false},
		{"nil", nil, "/", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.AllowHost(tt.p, tt.vhost); got != tt.want {
				t.Errorf("AllowHost = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestACLDefaultDeny(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "rules:\n", "rules: []\n", "~\n"} {
		a := loadACLText(t, text)
		p := &broker.Principal{Name: "alice", Publish: nil}
		if a.Len() != 0 || a.AllowHost(p, "/") || a.Allow(p, "/", broker.ActionPublish, "/topic/x") {
			t.Errorf("%q: something allowed", text)
		}
	}
}

func TestLoadACLErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unknown top key", "rules: []\nrulez: []\n", ":2: unknown key \"rulez\""},
		{"unknown rule key", "rules:\n  - users: [a]\n    publsh: [\"/topic/x\"]\n", ":3: unknown key \"publsh\" in rule"},
		{"rules not a list", "rules: {a: b}\n", ":1: rules must be a list"},
		{"rule not a mapping", "rules:\n  - alice\n", ":2: a rule must be a mapping"},
		{"users not a list", "rules:\n  - users: alice\n", ":2: users must be a list"},
		{"empty users", "rules:\n  - users: []\n", ":2: users is an empty list"},
		{"empty vhosts", "rules:\n  - vhosts: []\n", ":2: vhosts is an empty list"},
		{"bad pattern", "rules:\n  - publish:\n      - /topic/a\n      - /topic/ch#t\n", ":4: publish pattern \"/topic/ch#t\""},
		{"pattern without prefix", "rules:\n  - subscribe: [chat.#]\n", ":2: subscribe pattern \"chat.#\""},
		{"anonymous not bool", "rules:\n  - anonymous: yes please\n", ":2: anonymous must be true or false"},
		{"duplicate key", "rules:\n  - users: [a]\n    users: [b]\n", ":3: key \"users\" already given on line 2"},
		{"null item", "rules:\n  - users: [~]\n", ":2: users must hold non-empty strings"},
		{"bad user name", "rules:\n  - users: [\"a b\"]\n", ":2: users: user name \"a b\""},
		{"syntax error", "rules:\n\t- users: [a]\n", ":2: found character that cannot start any token"},
		{"top not a mapping", "- a\n", ":1: want a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "acl.yaml", []byte(tt.text))
			_, err := LoadACL(path)
			if err == nil || !strings.HasPrefix(err.Error(), path+tt.want) {
				t.Errorf("err = %v, want prefix %q", err, path+tt.want)
			}
		})
	}
}

func TestACLReload(t *testing.T) {
	path := writeFile(t, "acl.yaml", []byte("rules:\n  - users: [a]\n    publish: [/topic/x]\n"))
	a, err := LoadACL(path)
	if err != nil {
		t.Fatal(err)
	}
	p := &broker.Principal{Name: "a"}
	if !a.Allow(p, "/", broker.ActionPublish, "/topic/x") {
		t.Fatal("before reload")
	}
	if err := os.WriteFile(path, []byte("rules:\n  - users: [a]\n    publish: [/topic/y]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if a.Allow(p, "/", broker.ActionPublish, "/topic/x") || !a.Allow(p, "/", broker.ActionPublish, "/topic/y") {
		t.Fatal("after reload")
	}
	if err := os.WriteFile(path, []byte("rules:\n  - bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Fatalf("reload of a bad file: %v", err)
	}
	if !a.Allow(p, "/", broker.ActionPublish, "/topic/y") {
		t.Fatal("a failed reload dropped the rules")
	}
}

func TestACLAliases(t *testing.T) {
	a := loadACLText(t, "rules:\n  - users: [alice]\n    publish: &pubs [\"/topic/a\"]\n  - roles: [x]\n    publish: *pubs\n")
	if !a.Allow(&broker.Principal{Name: "y", Roles: []string{"x"}}, "/", broker.ActionPublish, "/topic/a") {
		t.Error("the aliased list was not used")
	}
}

func BenchmarkACLAllow(b *testing.B) {
	a := loadACLText(b, testACL)
	p := &broker.Principal{Name: "carol", Roles: []string{"staff", "chat"}, Subscribe: []string{"/topic/metrics.#"}}
	cases := []struct {
		name string
		a    broker.Action
		dest string
		want bool
	}{
		{"allowed", broker.ActionPublish, "/topic/chat.room1.msgs", true},
		{"subscribe pattern", broker.ActionSubscribe, "/topic/chat.*", true},
		{"token grant", broker.ActionSubscribe, "/topic/metrics.cpu", true},
		{"denied", broker.ActionPublish, "/queue/secret", false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if got := a.Allow(p, "/", c.a, c.dest); got != c.want {
				b.Fatalf("Allow = %v", got)
			}
			b.ReportAllocs()
			for b.Loop() {
				a.Allow(p, "/", c.a, c.dest)
			}
		})
	}
}

func TestACLAllowAllocatesNothing(t *testing.T) {
	a := loadACLText(t, testACL)
	p := &broker.Principal{Name: "carol", Roles: []string{"chat"}, Subscribe: []string{"/topic/metrics.#"}}
	allocs := testing.AllocsPerRun(100, func() {
		a.Allow(p, "/", broker.ActionSubscribe, "/topic/chat.*")
		a.Allow(p, "/", broker.ActionPublish, "/queue/secret")
		a.AllowHost(p, "/")
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

func TestTokenGrants(t *testing.T) {
	token := &broker.Principal{Name: "t", Publish: []string{"/topic/chat.room1"}, Subscribe: []string{"/topic/chat.#"}, VHosts: []string{"/"}}
	tests := []struct {
		name  string
		p     *broker.Principal
		vhost string
		act   broker.Action
		dest  string
		want  bool
	}{
		{"granted publish", token, "/", broker.ActionPublish, "/topic/chat.room1", true},
		{"other room", token, "/", broker.ActionPublish, "/topic/chat.room2", false},
		{"granted pattern", token, "/", broker.ActionSubscribe, "/topic/chat.*", true},
		{"wider pattern", token, "/", broker.ActionSubscribe, "/topic/#", false},
		{"other host", token, "tenant-a", broker.ActionPublish, "/topic/chat.room1", false},
		{"no grants", &broker.Principal{Name: "u"}, "/", broker.ActionSubscribe, "/topic/chat.x", false},
		{"nil", nil, "/", broker.ActionPublish, "/topic/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (TokenGrants{}).Allow(tt.p, tt.vhost, tt.act, tt.dest); got != tt.want {
				t.Errorf("Allow = %v, want %v", got, tt.want)
			}
		})
	}
	if !(TokenGrants{}).AllowHost(token, "/") || (TokenGrants{}).AllowHost(token, "tenant-a") || (TokenGrants{}).AllowHost(nil, "/") {
		t.Error("AllowHost does not follow the vhosts claim")
	}
	if !(TokenGrants{}).AllowHost(&broker.Principal{Name: "u"}, "any") {
		t.Error("a principal without a vhosts claim is not limited to hosts")
	}
}
