package auth

import (
	"context"
	"errors"
	"testing"

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
		{broker.Credentials{Login: "alice"}, ErrInvalidCredentials},
		{broker.Credentials{Passcode: "x"}, ErrInvalidCredentials},
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
