package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
	"github.com/stompbox/stompbox/server"
	"github.com/stompbox/stompbox/server/auth"
)

// security is what the auth options build: the authenticator chain, the
// authorizer, and the files SIGHUP rereads (server.Options.Reloaders).
type security struct {
	authenticator broker.Authenticator
	authorizer    broker.Authorizer
	reloaders     []server.Reloader
	// adminUsers checks the admin API's HTTP Basic logins against the
	// users file (roles admin and monitor); nil without one.
	adminUsers broker.Authenticator
}

// buildSecurity turns the auth options into the broker's Authenticator and
// Authorizer. With users or JWT configured, authorization is default deny:
// only the rules file and the tokens' own claims grant anything. Anonymous
// alone, without rules, is a development setup that may do everything.
func buildSecurity(a config.Auth, logger *slog.Logger) (*security, error) {
	sec := &security{}
	var chain []broker.Authenticator
	if a.UsersFile != "" {
		users, err := auth.LoadUsers(a.UsersFile)
		if err != nil {
			return nil, err
		}
		chain = append(chain, users)
		sec.reloaders = append(sec.reloaders, users)
		// Its own backoff: an address guessing admin passwords is slowed
		// down on the admin listener as a STOMP client is on its own.
		sec.adminUsers = users
	}
	if a.JWTSecretFile != "" || a.JWTKeysFile != "" {
		cfg := auth.JWTConfig{KeysFile: a.JWTKeysFile, Audience: a.JWTAudience, Issuer: a.JWTIssuer,
			UserClaim: a.JWTUserClaim, RolesClaim: a.JWTRolesClaim, PublishClaim: a.JWTPublishClaim,
			SubscribeClaim: a.JWTSubscribe, VHostsClaim: a.JWTVHostsClaim, Leeway: jwtLeeway(a.JWTLeeway)}
		if a.JWTSecretFile != "" {
			secret, err := os.ReadFile(a.JWTSecretFile)
			if err != nil {
				return nil, fmt.Errorf("auth.jwt_secret_file: %w", err)
			}
			cfg.Secret = bytes.TrimRight(secret, "\r\n")
		}
		jwt, err := auth.NewJWT(cfg)
		if err != nil {
			return nil, err
		}
		chain = append(chain, jwt)
		if a.JWTKeysFile != "" {
			sec.reloaders = append(sec.reloaders, jwt)
		}
	}
	if a.Anonymous {
		chain = append(chain, auth.Anonymous{})
		logger.Warn("ANONYMOUS ACCESS ENABLED: clients without credentials are accepted (auth.anonymous); do not expose this broker")
	}
	// The backoff wraps the whole chain: what it guards is the checks'
	// shared capacity, whichever kind of credentials an address tries.
	backoffAfter := a.FailureBackoffAfter
	if backoffAfter == 0 {
		backoffAfter = -1 // auth.BackoffConfig: negative disables, zero means default
	}
	sec.authenticator = auth.NewBackoff(auth.Chain(chain...),
		auth.BackoffConfig{After: backoffAfter, Max: time.Duration(a.FailureBackoffMax)})
	if sec.adminUsers != nil {
		sec.adminUsers = auth.NewBackoff(sec.adminUsers, auth.BackoffConfig{After: backoffAfter, Max: time.Duration(a.FailureBackoffMax)})
	}
	switch {
	case a.ACLFile != "":
		acl, err := auth.LoadACL(a.ACLFile)
		if err != nil {
			return nil, err
		}
		sec.authorizer = acl
		sec.reloaders = append(sec.reloaders, acl)
	case a.UsersFile == "" && a.JWTSecretFile == "" && a.JWTKeysFile == "":
		sec.authorizer = broker.AllowEverything{}
		logger.Warn("no authorization rules (auth.acl_file): anonymous clients may publish and subscribe to everything")
	default:
		sec.authorizer = auth.TokenGrants{}
	}
	return sec, nil
}

// jwtLeeway maps the option (0: none) onto auth.JWTConfig (0: default,
// negative: none).
func jwtLeeway(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}
