package auth

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"github.com/stompbox/stompbox/broker"
)

// DefaultCost is the bcrypt cost SetPassword uses when given cost 0.
const DefaultCost = bcrypt.DefaultCost

// MaxCost is the highest bcrypt cost accepted, in the file or by
// SetPassword: bcrypt's own limit (31) means hours per login, and a hash of
// such a cost, typed by mistake, would stall every login and the start-up
// (which hashes a dummy at the file's cost). At 16 a login already takes
// seconds.
const MaxCost = 16

// maxPasswordLen is bcrypt's limit: it ignores every byte past the 72nd, so
// a longer password would silently be a shorter one.
const maxPasswordLen = 72

// bcryptHashLen is the length of every bcrypt hash in its modular-crypt
// form ("$2a$10$" + 22 salt + 31 hash characters).
const bcryptHashLen = 60

// Users authenticates logins against a users file of lines
//
//	user:bcrypt-hash[:role1,role2]
//
// with blank lines and lines starting with # ignored. It is safe for
// concurrent use; Reload swaps the table in place.
type Users struct {
	path string // immutable
	// sem holds one token per bcrypt comparison in progress; its capacity
	// (GOMAXPROCS at load) bounds them to one per core, so a flood of
	// CONNECTs waits its turn (until its connect deadline) instead of
	// piling up hashing goroutines that the scheduler would share with
	// message delivery. Immutable.
	sem chan struct{}
	// compare is bcrypt.CompareHashAndPassword; tests replace it before use
	// to observe concurrency. Immutable after LoadUsers.
	compare func(hash, password []byte) error

	table    atomic.Pointer[userTable]
	reloadMu sync.Mutex // serializes Reload; never held by Authenticate
}

// userTable is one immutable generation of the users file.
type userTable struct {
	users map[string]userEntry
	// dummy is a hash of a random password at the highest cost in the
	// file: unknown logins are compared against it, so they take as long
	// as a wrong password for a real user and reveal nothing.
	dummy     []byte
	dummyCost int
}

type userEntry struct {
	hash  []byte
	roles []string
}

// LoadUsers reads the users file at path. Errors name path:line; they never
// contain a hash in full or a password.
func LoadUsers(path string) (*Users, error) {
	u := &Users{
		path:    path,
		sem:     make(chan struct{}, runtime.GOMAXPROCS(0)),
		compare: bcrypt.CompareHashAndPassword,
	}
	t, err := readUsers(path, nil)
	if err != nil {
		return nil, err
	}
	u.table.Store(t)
	return u, nil
}

// Reload rereads the users file. On error the users loaded before stay in
// force, and the error says why the file was refused.
func (u *Users) Reload() error {
	u.reloadMu.Lock()
	defer u.reloadMu.Unlock()
	t, err := readUsers(u.path, u.table.Load())
	if err != nil {
		return err
	}
	u.table.Store(t)
	return nil
}

// Len returns how many users are loaded.
func (u *Users) Len() int { return len(u.table.Load().users) }

// String names the file, never its contents.
func (u *Users) String() string { return "users file " + u.path }

// readUsers loads and parses path; prev (may be nil) lends its dummy hash
// when the cost is unchanged, sparing a bcrypt run per reload.
func readUsers(path string, prev *userTable) (*userTable, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	users, maxCost, err := parseUsers(path, data)
	if err != nil {
		return nil, err
	}
	t := &userTable{users: users, dummyCost: maxCost}
	if prev != nil && prev.dummyCost == maxCost {
		t.dummy = prev.dummy
	} else if t.dummy, err = dummyHash(maxCost); err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return t, nil
}

// dummyHash hashes a random password nobody knows at the given cost.
func dummyHash(cost int) ([]byte, error) {
	var pw [16]byte
	_, _ = rand.Read(pw[:]) // crypto/rand never fails on supported platforms
	h, err := bcrypt.GenerateFromPassword(pw[:], cost)
	if err != nil {
		return nil, fmt.Errorf("making the dummy hash: %w", err)
	}
	return h, nil
}

// parseUsers parses a users file's contents; name is used in errors. It
// returns the users and the highest bcrypt cost among them (DefaultCost for
// a file without users). It is pure, so fuzzing drives it directly.
func parseUsers(name string, data []byte) (map[string]userEntry, int, error) {
	users := make(map[string]userEntry)
	firstLine := make(map[string]int)
	maxCost := 0
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) < 2 || len(fields) > 3 {
			return nil, 0, fmt.Errorf("%s:%d: want user:bcrypt-hash[:roles]", name, lineNo)
		}
		user, hash := fields[0], fields[1]
		if err := checkUserName(user); err != nil {
			return nil, 0, fmt.Errorf("%s:%d: %w", name, lineNo, err)
		}
		if first, dup := firstLine[user]; dup {
			return nil, 0, fmt.Errorf("%s:%d: user %q is already defined on line %d", name, lineNo, user, first)
		}
		cost, err := hashCost(hash)
		if err != nil {
			return nil, 0, fmt.Errorf("%s:%d: user %q: %w", name, lineNo, user, err)
		}
		var roles []string
		if len(fields) == 3 && strings.TrimSpace(fields[2]) != "" {
			for r := range strings.SplitSeq(fields[2], ",") {
				r = strings.TrimSpace(r)
				if err := checkRole(r); err != nil {
					return nil, 0, fmt.Errorf("%s:%d: user %q: %w", name, lineNo, user, err)
				}
				roles = append(roles, r)
			}
		}
		firstLine[user] = lineNo
		users[user] = userEntry{hash: []byte(hash), roles: roles}
		maxCost = max(maxCost, cost)
	}
	if maxCost == 0 {
		maxCost = DefaultCost
	}
	return users, maxCost, nil
}

// hashCost checks that h is a whole bcrypt hash and returns its cost. The
// error does not quote h: a hash is not a password, but it is still what an
// attacker would want to crack offline.
func hashCost(h string) (int, error) {
	if !bcryptShape(h) {
		return 0, fmt.Errorf("not a bcrypt hash (want $2a$, $2b$ or $2y$, a two-digit cost, $ and 53 characters)")
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return 0, fmt.Errorf("not a bcrypt hash: %w", err)
	}
	if cost < bcrypt.MinCost || cost > MaxCost {
		return 0, fmt.Errorf("bcrypt cost %d is outside %d..%d", cost, bcrypt.MinCost, MaxCost)
	}
	return cost, nil
}

// bcryptShape checks the modular-crypt form exactly; bcrypt's own parser
// is lenient about the version and the alphabet.
func bcryptShape(h string) bool {
	if len(h) != bcryptHashLen || h[0] != '$' || h[1] != '2' || !strings.ContainsRune("aby", rune(h[2])) ||
		h[3] != '$' || !isDigit(h[4]) || !isDigit(h[5]) || h[6] != '$' {
		return false
	}
	for i := 7; i < len(h); i++ {
		if c := h[i]; !(c == '.' || c == '/' || isDigit(c) || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// checkUserName accepts what the file format can hold unambiguously.
func checkUserName(user string) error {
	switch {
	case user == "":
		return fmt.Errorf("empty user name")
	case user[0] == '#':
		return fmt.Errorf("user name %q starts with # (it would read as a comment)", user)
	case strings.ContainsFunc(user, badNameRune):
		return fmt.Errorf("user name %q contains ':', whitespace, a control character or invalid UTF-8", user)
	}
	return nil
}

// checkRole accepts role names that survive the comma-separated list.
func checkRole(role string) error {
	switch {
	case role == "":
		return fmt.Errorf("empty role name")
	case strings.ContainsFunc(role, func(r rune) bool { return r == ',' || badNameRune(r) }):
		return fmt.Errorf("role name %q contains ',', ':', whitespace or a control character", role)
	}
	return nil
}

func badNameRune(r rune) bool {
	return r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar
}

// Authenticate checks c.Login and c.Passcode against the users file. An
// unknown login and a wrong passcode give the same error, after the same
// amount of bcrypt work. At most GOMAXPROCS checks run at once; a caller
// whose ctx ends while waiting for a slot gets an error wrapping
// broker.ErrAuthUnavailable (the client may retry).
func (u *Users) Authenticate(ctx context.Context, c broker.Credentials) (*broker.Principal, error) {
	t := u.table.Load()
	entry, known := t.users[c.Login]
	// A passcode past bcrypt's limit can never be right (SetPassword
	// refuses them), but it still costs a comparison, so that its length
	// cannot be used to probe which logins exist.
	ok := known && len(c.Passcode) <= maxPasswordLen
	hash := entry.hash
	if !ok {
		hash = t.dummy
	}
	if err := u.acquire(ctx); err != nil {
		return nil, err
	}
	err := u.compare(hash, []byte(c.Passcode))
	<-u.sem
	if !ok || err != nil {
		return nil, ErrInvalidCredentials
	}
	return &broker.Principal{Name: c.Login, Roles: slices.Clone(entry.roles)}, nil
}

// acquire takes a bcrypt slot, or fails once ctx is done.
func (u *Users) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", broker.ErrAuthUnavailable, err)
	}
	select {
	case u.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: too many logins being checked: %w", broker.ErrAuthUnavailable, ctx.Err())
	}
}

// CheckPrincipal implements broker.PrincipalChecker for a principal this
// Users accepted: ErrUserRemoved when the reloaded file no longer has the
// user, otherwise the principal with the user's current roles (p itself
// when they are unchanged). The password is not asked again: a changed
// password does not end sessions already open.
func (u *Users) CheckPrincipal(p *broker.Principal) (*broker.Principal, error) {
	entry, ok := u.table.Load().users[p.Name]
	if !ok {
		return nil, ErrUserRemoved
	}
	if slices.Equal(entry.roles, p.Roles) {
		return p, nil
	}
	np := *p
	np.Roles = slices.Clone(entry.roles)
	return &np, nil
}

var _ broker.PrincipalChecker = (*Users)(nil)
