// Package auth owns who may connect to stompbox and what they may do there:
// the broker.Authenticator and broker.Authorizer implementations the server
// wires into the broker.
//
// Authentication:
//
//   - [Users]: a users file of "user:bcrypt-hash[:role1,role2]" lines, checked
//     with bcrypt under a bounded number of concurrent checks, rewritten
//     atomically by [SetPassword].
//   - [JWT]: signed tokens (HS256 with a shared secret, RS256/384/512 or
//     ES256/384 with public keys from a PEM or JWKS file) given as the CONNECT
//     passcode or on the WebSocket upgrade request; claims map to the
//     principal's name, roles, destination grants and virtual hosts.
//   - [Anonymous]: clients that present no credentials at all.
//   - [Chain]: routes credentials to one of the above by their shape.
//   - [Backoff]: wraps any of them so that an address that keeps failing is
//     answered without a check for a growing time, and cannot keep the
//     bcrypt checks busy for everyone.
//
// Users, Chain and Backoff are also broker.PrincipalCheckers: after a
// reload they tell open sessions whether their user still exists.
//
// Authorization: [ACL] reads a YAML rules file that grants publish and
// subscribe patterns per user, role or anonymous client and virtual host;
// the principal's own token grants are honoured too (see [Grant]). Patterns
// use the broker's topic wildcard syntax; [Covers] decides whether a pattern
// covers a destination or a whole SUBSCRIBE pattern.
//
// Error texts returned by Authenticate are safe to show a client: they never
// contain a password, token or secret, and they do not tell an unknown user
// from a wrong password. Nothing here logs; nothing here keeps global state:
// every value is built by its constructor and may be reloaded in place.
package auth
