package auth

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stompbox/stompbox/broker"
)

// failing is a login authenticator that cannot run.
type failing struct{}

func (failing) Authenticate(context.Context, broker.Credentials) (*broker.Principal, error) {
	return nil, errors.Join(broker.ErrAuthUnavailable, errors.New("directory down"))
}

func TestAnonymous(t *testing.T) {
	tests := []struct {
		creds   broker.Credentials
		wantErr error
	}{
		{broker.Credentials{}, nil},
		{broker.Credentials{Host: "/", RemoteAddr: "127.0.0.1:1", FromUpgrade: true}, nil},
		{broker.Credentials{Login: "alice"}, ErrAnonymousOnly},
		{broker.Credentials{Passcode: "x"}, ErrAnonymousOnly},
	}
	for _, tt := range tests {
		p, err := Anonymous{}.Authenticate(context.Background(), tt.creds)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%+v: err = %v, want %v", tt.creds, err, tt.wantErr)
		}
		if err == nil && (p.Name != "anonymous" || !p.Anonymous) {
			t.Errorf("principal = %+v", p)
		}
	}
}

func TestChain(t *testing.T) {
	users := loadUsersText(t, "alice:"+hashOf(t, "wonderland")+":admin\n")
	j, err := NewJWT(JWTConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	token := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"sub": "tok-user"}))
	badToken := sign(t, jwt.SigningMethodHS256, otherSecret, "", claims(nil))

	var nilJWT *JWT
	var nilUsers *Users
	full := Chain(j, users, Anonymous{})
	tests := []struct {
		name     string
		chain    broker.Authenticator
		creds    broker.Credentials
		wantName string
		wantErr  error
	}{
		{"token as passcode", full, broker.Credentials{Passcode: token}, "tok-user", nil},
		{"token with a login", full, broker.Credentials{Login: "whoever", Passcode: token}, "tok-user", nil},
		{"token from upgrade", full, broker.Credentials{Passcode: token, FromUpgrade: true}, "tok-user", nil},
		{"bad token goes to JWT, not Users", full, broker.Credentials{Login: "alice", Passcode: badToken}, "", ErrInvalidToken},
		{"malformed upgrade token is a token error", full, broker.Credentials{Passcode: "junk", FromUpgrade: true}, "", ErrInvalidToken},
		{"login and password", full, broker.Credentials{Login: "alice", Passcode: "wonderland"}, "alice", nil},
		{"dotted password is not a token", full, broker.Credentials{Login: "alice", Passcode: "a.b.c"}, "", ErrInvalidCredentials},
		{"wrong password", full, broker.Credentials{Login: "alice", Passcode: "x"}, "", ErrInvalidCredentials},
		{"anonymous", full, broker.Credentials{}, "anonymous", nil},
		{"passcode without login", full, broker.Credentials{Passcode: "wonderland"}, "", ErrInvalidCredentials},

		{"no anonymous configured", Chain(j, users), broker.Credentials{}, "", ErrAuthRequired},
		{"token without JWT configured", Chain(users), broker.Credentials{Passcode: token}, "", ErrInvalidCredentials},
		{"token and login without JWT configured", Chain(users), broker.Credentials{Login: "alice", Passcode: token}, "", ErrInvalidCredentials},
		{"login without users configured", Chain(j, Anonymous{}), broker.Credentials{Login: "alice", Passcode: "wonderland"}, "", ErrInvalidCredentials},
		{"typed nils skipped", Chain(nilJWT, nilUsers, nil, &Anonymous{}), broker.Credentials{}, "anonymous", nil},
		{"typed nils: login refused", Chain(nilJWT, nilUsers), broker.Credentials{Login: "alice", Passcode: "wonderland"}, "", ErrInvalidCredentials},
		{"empty chain: nothing", Chain(), broker.Credentials{}, "", ErrAuthRequired},
		{"empty chain: login", Chain(), broker.Credentials{Login: "alice", Passcode: "wonderland"}, "", ErrInvalidCredentials},
		{"empty chain: token", Chain(), broker.Credentials{Passcode: token, FromUpgrade: true}, "", ErrInvalidCredentials},
		{"second login authenticator", Chain(failing{}, users), broker.Credentials{Login: "alice", Passcode: "wonderland"}, "alice", nil},
		{"anonymous only: login", Chain(Anonymous{}), broker.Credentials{Login: "alice", Passcode: "wonderland"}, "", ErrAnonymousOnly},
		{"anonymous only: login without passcode", Chain(Anonymous{}), broker.Credentials{Login: "alice"}, "", ErrAnonymousOnly},
		{"anonymous only: passcode without login", Chain(Anonymous{}), broker.Credentials{Passcode: "x"}, "", ErrAnonymousOnly},
		{"anonymous only: token", Chain(Anonymous{}), broker.Credentials{Passcode: token}, "", ErrAnonymousOnly},
		{"anonymous only: nothing", Chain(Anonymous{}), broker.Credentials{}, "anonymous", nil},
		{"unavailable is reported", Chain(failing{}, users), broker.Credentials{Login: "alice", Passcode: "x"}, "", broker.ErrAuthUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.chain.Authenticate(context.Background(), tt.creds)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				assertNoSecret(t, err, tt.creds.Passcode)
				return
			}
			if p.Name != tt.wantName {
				t.Errorf("name = %q, want %q", p.Name, tt.wantName)
			}
		})
	}
}

// loginOnly is a login authenticator that cannot say whether a principal
// still stands (no CheckPrincipal).
type loginOnly struct{}

func (loginOnly) Authenticate(context.Context, broker.Credentials) (*broker.Principal, error) {
	return nil, ErrInvalidCredentials
}

func TestChainCheckPrincipal(t *testing.T) {
	users := loadUsersText(t, "alice:"+hashOf(t, "wonderland")+":admin\nbob:"+hashOf(t, "builder")+"\n")
	j, err := NewJWT(JWTConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	alice := &broker.Principal{Name: "alice", Roles: []string{"admin"}}
	aliceOldRoles := &broker.Principal{Name: "alice", Roles: []string{"ops"}}
	gone := &broker.Principal{Name: "carol"}
	token := &broker.Principal{Name: "carol", Expires: time.Unix(1_800_000_000, 0)}
	anon := &broker.Principal{Name: "anonymous", Anonymous: true}
	tests := []struct {
		name      string
		chain     broker.Authenticator
		p         *broker.Principal
		wantRoles []string
		wantErr   error
	}{
		{"unchanged user", Chain(j, users), alice, []string{"admin"}, nil},
		{"roles changed", Chain(j, users), aliceOldRoles, []string{"admin"}, nil},
		{"user removed", Chain(j, users), gone, nil, ErrUserRemoved},
		{"token principal stands", Chain(j, users), token, nil, nil},
		{"anonymous stands", Chain(users, Anonymous{}), anon, nil, nil},
		{"no login checker: stands", Chain(loginOnly{}), gone, nil, nil},
		{"one login cannot say: stands", Chain(users, loginOnly{}), gone, nil, nil},
		{"through the backoff", NewBackoff(Chain(users), BackoffConfig{}), gone, nil, ErrUserRemoved},
		{"backoff over a non-checker", NewBackoff(loginOnly{}, BackoffConfig{}), gone, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, ok := tt.chain.(broker.PrincipalChecker)
			if !ok {
				t.Fatalf("%T is not a PrincipalChecker", tt.chain)
			}
			got, err := pc.CheckPrincipal(tt.p)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Name != tt.p.Name || !got.Expires.Equal(tt.p.Expires) {
				t.Errorf("principal = %+v, want %+v", got, tt.p)
			}
			if tt.wantRoles != nil && !slices.Equal(got.Roles, tt.wantRoles) {
				t.Errorf("roles = %v, want %v", got.Roles, tt.wantRoles)
			}
		})
	}
}

// A user removed from the file by a reload no longer stands; one whose
// roles changed stands with the new roles.
func TestUsersCheckPrincipalAfterReload(t *testing.T) {
	path := writeFile(t, "users", []byte("alice:"+hashOf(t, "wonderland")+":admin\nbob:"+hashOf(t, "builder")+"\n"))
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := u.Authenticate(context.Background(), broker.Credentials{Login: "alice", Passcode: "wonderland"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := u.Authenticate(context.Background(), broker.Credentials{Login: "bob", Passcode: "builder"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := u.CheckPrincipal(alice); err != nil || got != alice {
		t.Fatalf("before reload: %+v, %v; want the same principal", got, err)
	}
	if err := os.WriteFile(path, []byte("bob:"+hashOf(t, "builder")+":ops\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := u.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.CheckPrincipal(alice); !errors.Is(err, ErrUserRemoved) {
		t.Errorf("alice after removal: err = %v, want ErrUserRemoved", err)
	}
	got, err := u.CheckPrincipal(bob)
	if err != nil || !slices.Equal(got.Roles, []string{"ops"}) || bob.Roles != nil {
		t.Errorf("bob after reload: %+v, %v; want roles [ops] on a new principal", got, err)
	}
}

// Anonymous clients share one principal: a site of anonymous readers
// would otherwise hold one per connection.
func TestChainAnonymousPrincipalShared(t *testing.T) {
	c := Chain(Anonymous{})
	p1, err1 := c.Authenticate(context.Background(), broker.Credentials{})
	p2, err2 := c.Authenticate(context.Background(), broker.Credentials{})
	if err1 != nil || err2 != nil {
		t.Fatalf("anonymous refused: %v, %v", err1, err2)
	}
	if p1 != p2 || p1.Name != "anonymous" || !p1.Anonymous {
		t.Fatalf("principals %p %+v and %p %+v: want one shared anonymous principal", p1, p1, p2, p2)
	}
}
