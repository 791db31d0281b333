package auth_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/auth"
)

func ExampleCovers() {
	for _, c := range [][2]string{
		{"/topic/chat.#", "/topic/chat.room1"},
		{"/topic/chat.#", "/topic/chat.*"}, // a SUBSCRIBE pattern, covered whole
		{"/topic/chat.*", "/topic/chat.#"}, // "*" never covers "#"
		{"/queue/orders.*", "/queue/orders.eu"},
		{"/topic/#", "/queue/orders"}, // kinds never cross
		{"#", "/queue/orders"},        // "#" alone covers everything
	} {
		fmt.Printf("%-16s covers %-18s %v\n", c[0], c[1], auth.Covers(c[0], c[1]))
	}
	// Output:
	// /topic/chat.#    covers /topic/chat.room1  true
	// /topic/chat.#    covers /topic/chat.*      true
	// /topic/chat.*    covers /topic/chat.#      false
	// /queue/orders.*  covers /queue/orders.eu   true
	// /topic/#         covers /queue/orders      false
	// #                covers /queue/orders      true
}

func ExampleSetPassword() {
	dir, _ := os.MkdirTemp("", "users")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "users")

	// Cost: 0 for DefaultCost; the lowest one here only to keep the
	// example fast.
	if err := auth.SetPassword(path, "alice", "wonderland", []string{"admin"}, bcrypt.MinCost); err != nil {
		fmt.Println(err)
		return
	}
	users, err := auth.LoadUsers(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := users.Authenticate(context.Background(), broker.Credentials{Login: "alice", Passcode: "wonderland"})
	fmt.Println(p.Name, p.Roles, err)
	_, err = users.Authenticate(context.Background(), broker.Credentials{Login: "alice", Passcode: "guess"})
	fmt.Println(err)
	// Output:
	// alice [admin] <nil>
	// invalid login or passcode
}

func ExampleNewJWT() {
	secret := []byte("a shared secret of at least 32 bytes")
	j, err := auth.NewJWT(auth.JWTConfig{Secret: secret, Audience: "stompbox"})
	if err != nil {
		fmt.Println(err)
		return
	}
	// What an identity provider would issue.
	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":       "alice",
		"aud":       "stompbox",
		"exp":       time.Now().Add(time.Hour).Unix(),
		"roles":     []string{"chat"},
		"subscribe": []string{"/topic/chat.#"},
	}).SignedString(secret)

	p, err := j.Authenticate(context.Background(), broker.Credentials{Passcode: token})
	fmt.Println(p.Name, p.Roles, p.Subscribe, err)
	fmt.Println(auth.Grant(p, broker.ActionSubscribe, "/topic/chat.room1"))
	fmt.Println(j) // never the secret
	// Output:
	// alice [chat] [/topic/chat.#] <nil>
	// true
	// JWT(HS256 secret, audience stompbox)
}

func ExampleChain() {
	dir, _ := os.MkdirTemp("", "users")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "users")
	_ = auth.SetPassword(path, "alice", "wonderland", nil, bcrypt.MinCost)
	users, _ := auth.LoadUsers(path)

	// No JWT configured: tokens are refused like any wrong passcode.
	a := auth.Chain(users, auth.Anonymous{})
	for _, c := range []broker.Credentials{
		{Login: "alice", Passcode: "wonderland"},
		{},
		{Login: "alice", Passcode: "nope"},
		{Passcode: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"},
	} {
		p, err := a.Authenticate(context.Background(), c)
		if err != nil {
			fmt.Println("refused:", err)
			continue
		}
		fmt.Println("accepted:", p.Name, p.Anonymous)
	}
	// Output:
	// accepted: alice false
	// accepted: anonymous true
	// refused: invalid login or passcode
	// refused: invalid login or passcode
}

func ExampleLoadACL() {
	dir, _ := os.MkdirTemp("", "acl")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "acl.yaml")
	_ = os.WriteFile(path, []byte(`
rules:
  - roles: [chat]
    vhosts: ["/"]
    publish: ["/topic/chat.#"]
    subscribe: ["/topic/chat.*"]
  - anonymous: true
    subscribe: ["/topic/public.#"]
`), 0o600)
	acl, err := auth.LoadACL(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	carol := &broker.Principal{Name: "carol", Roles: []string{"chat"}}
	fmt.Println(acl.AllowHost(carol, "/"), acl.AllowHost(carol, "tenant-a"))
	fmt.Println(acl.Allow(carol, "/", broker.ActionPublish, "/topic/chat.room1"))
	fmt.Println(acl.Allow(carol, "/", broker.ActionSubscribe, "/topic/chat.*"))
	fmt.Println(acl.Allow(carol, "/", broker.ActionSubscribe, "/topic/chat.#"))
	fmt.Println(acl.Allow(carol, "/", broker.ActionPublish, "/queue/orders")) // default deny
	// Output:
	// true false
	// true
	// true
	// false
	// false
}

func ExampleLooksLikeJWT() {
	fmt.Println(auth.LooksLikeJWT("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"))
	fmt.Println(auth.LooksLikeJWT("my.pass.word"))
	// Output:
	// true
	// false
}
