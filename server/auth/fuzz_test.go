package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/stompbox/stompbox/broker"
)

// maxFuzzLen keeps each fuzz input within the sizes a frame header holds,
// so that the time bound below means something.
const maxFuzzLen = 4096

// hasWildcardSegment reports whether s has a segment that is exactly "*"
// or "#": without one, s is a literal name for broker.MatchTopic.
func hasWildcardSegment(s string) bool {
	for seg := range strings.SplitSeq(s, ".") {
		if seg == "*" || seg == "#" {
			return true
		}
	}
	return false
}

// instantiate turns a pattern into a name it matches: "*" becomes a
// literal, "#" one literal or none.
func instantiate(pattern string, drop bool) string {
	var segs []string
	for seg := range strings.SplitSeq(pattern, ".") {
		switch {
		case seg == "*", seg == "#" && !drop:
			segs = append(segs, "z")
		case seg == "#":
		default:
			segs = append(segs, seg)
		}
	}
	return strings.Join(segs, ".")
}

func FuzzCovers(f *testing.F) {
	for _, s := range [][2]string{
		{"chat.#", "chat.room1"}, {"chat.*", "chat.#"}, {"#", "#"}, {"#.#.#.#.x", "a.a.a.a.a.a.a.y"},
		{"*.a.#", "b.a"}, {"a..b", "a..b"}, {"", ""}, {"a#", "a#"}, {"#.a", "*.a"}, {"*.#", "#.*"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, req string) {
		if len(pattern) > maxFuzzLen || len(req) > maxFuzzLen {
			return
		}
		start := time.Now()
		got := coversName(pattern, req)
		viaCovers := Covers("/topic/"+pattern, "/topic/"+req)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took %v on %d and %d bytes", d, len(pattern), len(req))
		}
		valid := wellFormed(pattern) && wellFormed(req)
		if viaCovers != (valid && got) {
			t.Fatalf("Covers = %v, coversName = %v, well-formed = %v", viaCovers, got, valid)
		}
		if Covers("/queue/"+pattern, "/queue/"+req) != viaCovers || Covers("/topic/"+pattern, "/queue/"+req) {
			t.Fatal("queue and topic disagree, or kinds crossed")
		}
		if wellFormed(pattern) && (!coversName(pattern, pattern) || !Covers("/topic/"+pattern, "/topic/"+pattern)) {
			t.Fatalf("%q does not cover itself", pattern)
		}
		if !hasWildcardSegment(req) {
			if want := broker.MatchTopic(pattern, req); got != want {
				t.Fatalf("coversName(%q, %q) = %v, broker.MatchTopic = %v", pattern, req, got, want)
			}
		} else if got {
			// Soundness: names the requested pattern matches, the rule
			// matches too.
			for _, drop := range []bool{false, true} {
				if n := instantiate(req, drop); broker.MatchTopic(req, n) && !broker.MatchTopic(pattern, n) {
					t.Fatalf("%q covers %q, but not its instance %q", pattern, req, n)
				}
			}
		}
	})
}

func FuzzUsersFile(f *testing.F) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	hash := string(h)
	for _, s := range []struct{ file, user, pw string }{
		{"alice:" + hash + "\n", "bob", "builder"},
		{"# c\n\nalice:" + hash + ":admin,ops\r\nbob:" + hash + "\n", "alice", "new"},
		{"alice:" + hash, "alice", "x"},
		{"", "carol", "p"},
		{"alice:" + hash + ":\n#bob:x\n", "bob", strings.Repeat("p", 72)},
		{"broken\n", "a", "b"},
		{"alice:" + hash + "\nalice:" + hash + "\n", "a", "b"},
		{"a:" + hash[:59] + "\n", "a b", "b"},
	} {
		f.Add([]byte(s.file), s.user, s.pw)
	}
	f.Fuzz(func(t *testing.T, data []byte, user, password string) {
		if len(data) > maxFuzzLen {
			return
		}
		before, _, err := parseUsers("users", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "users:") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		path := filepath.Join(t.TempDir(), "users")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		err = SetPassword(path, user, password, []string{"r1"}, bcrypt.MinCost)
		if err != nil {
			// The error must not depend on the password's content: the
			// same call with a same-length stand-in fails the same way.
			// (A substring check would flag passwords such as "ssword",
			// which every "set password:" text contains.)
			if err2 := SetPassword(path, user, strings.Repeat("x", len(password)), []string{"r1"}, bcrypt.MinCost); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("error depends on the password: %v, then %v", err, err2)
			}
			if checkUserName(user) == nil && password != "" && len(password) <= maxPasswordLen {
				t.Fatalf("SetPassword refused valid input: %v", err)
			}
			return
		}
		u, err := LoadUsers(path)
		if err != nil {
			t.Fatalf("the written file does not load: %v", err)
		}
		p, err := u.Authenticate(context.Background(), broker.Credentials{Login: user, Passcode: password})
		if err != nil || p.Name != user || len(p.Roles) != 1 || p.Roles[0] != "r1" {
			t.Fatalf("the written user does not log in: %v %+v", err, p)
		}
		after := u.table.Load().users
		for name, e := range before {
			if name != user && string(after[name].hash) != string(e.hash) {
				t.Fatalf("user %q lost or changed", name)
			}
		}
		if len(after) != len(before)+1 && len(after) != len(before) {
			t.Fatalf("%d users before, %d after", len(before), len(after))
		}
	})
}

func FuzzACL(f *testing.F) {
	f.Add([]byte(testACL))
	for _, s := range []string{
		"", "rules:\n", "rules: [{}]\n", "rules:\n  - anonymous: true\n", "rules:\n  - users: &a [x]\n    roles: *a\n",
		"rules:\n  - publish: [\"#\"]\n    vhosts: [\"/\"]\n", "{", "rules: !!map {}\n", "- a\n", "rules:\n  - users: [a]\n    users: [b]\n",
	} {
		f.Add([]byte(s))
	}
	principals := []*broker.Principal{
		{Name: "alice"}, {Name: "x", Roles: []string{"admin", "chat"}}, {Name: "anonymous", Anonymous: true},
		{Name: "t", Publish: []string{"/topic/#"}, VHosts: []string{"/"}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzLen {
			return
		}
		rules, err := parseACL("acl.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "acl.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, r := range rules {
			for _, p := range append(append([]string(nil), r.publish...), r.subscribe...) {
				if !validPattern(p) {
					t.Fatalf("invalid pattern %q loaded", p)
				}
			}
		}
		a := &ACL{}
		a.rules.Store(&rules)
		for _, p := range principals {
			a.AllowHost(p, "/")
			a.Allow(p, "/", broker.ActionPublish, "/topic/chat.x")
			a.Allow(p, "/", broker.ActionSubscribe, "/topic/#")
		}
		if a.Allow(nil, "/", broker.ActionPublish, "/topic/x") {
			t.Fatal("nil principal allowed")
		}
	})
}

// fuzzJWT is the authenticator FuzzJWT attacks: a secret and public keys
// of every supported kind, with the audience and issuer the seeds use.
func fuzzJWT(f *testing.F) *JWT {
	keys := writeFile(f, "keys.json", jwks(jwkOf("r1", &testRSA().PublicKey), jwkOf("e1", &testEC256().PublicKey)))
	j, err := NewJWT(JWTConfig{Secret: testSecret, KeysFile: keys, Audience: "stompbox", Issuer: "issuer-1"})
	if err != nil {
		f.Fatal(err)
	}
	return j
}

func FuzzJWT(f *testing.F) {
	j := fuzzJWT(f)
	// Seeds: well-formed tokens that must fail (wrong key, alg none,
	// expired), so the fuzzer mutates from near-valid inputs.
	f.Add(sign(f, jwt.SigningMethodHS256, otherSecret, "", claims(nil)))
	f.Add(sign(f, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()})))
	f.Add(sign(f, jwt.SigningMethodRS256, testRSA2(), "r1", claims(nil)))
	f.Add(sign(f, jwt.SigningMethodHS256, pemPublic(f, &testRSA().PublicKey), "r1", claims(nil)))
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	f.Add(none)
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.")
	f.Add("")
	f.Add("a.b.c")
	known := []error{ErrAuthRequired, ErrTokenExpired, ErrTokenNotValidYet, ErrWrongAudience, ErrInvalidToken}
	f.Fuzz(func(t *testing.T, passcode string) {
		_ = LooksLikeJWT(passcode)
		p, err := j.Authenticate(context.Background(), broker.Credentials{Passcode: passcode})
		if err == nil {
			t.Fatalf("a random passcode authenticated as %+v", p)
		}
		isKnown := false
		for _, k := range known {
			isKnown = isKnown || errors.Is(err, k) && err.Error() == k.Error()
		}
		if !isKnown {
			t.Fatalf("unexpected error %q", err)
		}
	})
}
