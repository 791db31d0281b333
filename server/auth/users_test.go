package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stompbox/stompbox/broker"
)

// testCost keeps bcrypt fast in tests; production uses DefaultCost.
const testCost = bcrypt.MinCost

func hashOf(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), testCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func loadUsersText(t testing.TB, text string) *Users {
	t.Helper()
	u, err := LoadUsers(writeFile(t, "users", []byte(text)))
	if err != nil {
		t.Fatalf("LoadUsers: %v", err)
	}
	return u
}

func TestUsersAuthenticate(t *testing.T) {
	u := loadUsersText(t, "# operators\n\n"+
		"alice:"+hashOf(t, "wonderland")+":admin,ops\n"+
		"  bob:"+hashOf(t, "builder")+"  \r\n"+
		"carol:"+hashOf(t, "c")+":\n")
	tests := []struct {
		name, login, pass string
		want              *broker.Principal
		wantErr           error
	}{
		{"right password with roles", "alice", "wonderland", &broker.Principal{Name: "alice", Roles: []string{"admin", "ops"}}, nil},
		{"right password, no roles", "bob", "builder", &broker.Principal{Name: "bob"}, nil},
		{"empty roles field", "carol", "c", &broker.Principal{Name: "carol"}, nil},
		{"wrong password", "alice", "wonderlant", nil, ErrInvalidCredentials},
		{"empty password", "alice", "", nil, ErrInvalidCredentials},
		{"unknown user", "mallory", "wonderland", nil, ErrInvalidCredentials},
		{"empty login", "", "wonderland", nil, ErrInvalidCredentials},
		{"case matters", "Alice", "wonderland", nil, ErrInvalidCredentials},
		{"password past 72 bytes", "alice", "wonderland" + strings.Repeat("x", 70), nil, ErrInvalidCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := u.Authenticate(context.Background(), broker.Credentials{Login: tt.login, Passcode: tt.pass})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if err.Error() != "invalid login or passcode" {
					t.Errorf("error text %q", err)
				}
				assertNoSecret(t, err, tt.pass)
				return
			}
			if p.Name != tt.want.Name || !slices.Equal(p.Roles, tt.want.Roles) || p.Anonymous {
				t.Errorf("principal = %+v, want %+v", p, tt.want)
			}
		})
	}
	if u.Len() != 3 {
		t.Errorf("Len = %d, want 3", u.Len())
	}
}

// TestUsersUnknownCostsTheSame checks by structure what a timing test
// could only check noisily: an unknown user costs one bcrypt comparison at
// the same cost as a real user's wrong password.
func TestUsersUnknownCostsTheSame(t *testing.T) {
	u := loadUsersText(t, "alice:"+hashOf(t, "pw")+"\n")
	var costs []int
	u.compare = func(hash, pw []byte) error {
		c, err := bcrypt.Cost(hash)
		if err != nil {
			t.Errorf("compared against a non-hash: %v", err)
		}
		costs = append(costs, c)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	_, errWrong := u.Authenticate(context.Background(), broker.Credentials{Login: "alice", Passcode: "nope"})
	_, errUnknown := u.Authenticate(context.Background(), broker.Credentials{Login: "nobody", Passcode: "nope"})
	if errWrong.Error() != errUnknown.Error() {
		t.Errorf("texts differ: %q vs %q", errWrong, errUnknown)
	}
	if !slices.Equal(costs, []int{testCost, testCost}) {
		t.Errorf("bcrypt costs compared = %v, want one comparison each at cost %d", costs, testCost)
	}
}

func TestUsersSemaphoreBoundsConcurrency(t *testing.T) {
	u := loadUsersText(t, "alice:"+hashOf(t, "pw")+"\n")
	limit := runtime.GOMAXPROCS(0)
	var cur, peak atomic.Int32
	u.compare = func(hash, pw []byte) error {
		n := cur.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		cur.Add(-1)
		return bcrypt.ErrMismatchedHashAndPassword
	}
	var wg sync.WaitGroup
	for range 8 * limit {
		wg.Go(func() {
			_, _ = u.Authenticate(context.Background(), broker.Credentials{Login: "alice", Passcode: "x"})
		})
	}
	wg.Wait()
	if got := int(peak.Load()); got > limit || got < 1 {
		t.Errorf("peak concurrent bcrypt checks = %d, want 1..%d", got, limit)
	}
	if got := int(peak.Load()); got != limit {
		t.Logf("peak %d below the limit %d (scheduling); the bound held", got, limit)
	}
}

func TestUsersSemaphoreHonoursContext(t *testing.T) {
	u := loadUsersText(t, "alice:"+hashOf(t, "pw")+"\n")
	limit := runtime.GOMAXPROCS(0)
	release := make(chan struct{})
	var inside sync.WaitGroup
	inside.Add(limit)
	u.compare = func(hash, pw []byte) error {
		inside.Done()
		<-release
		return bcrypt.ErrMismatchedHashAndPassword
	}
	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() {
			_, _ = u.Authenticate(context.Background(), broker.Credentials{Login: "alice", Passcode: "x"})
		})
	}
	inside.Wait() // every slot is taken
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := u.Authenticate(ctx, broker.Credentials{Login: "alice", Passcode: "s3cret-passcode"})
	if !errors.Is(err, broker.ErrAuthUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want ErrAuthUnavailable wrapping DeadlineExceeded", err)
	}
	assertNoSecret(t, err, "s3cret-passcode")
	close(release)
	wg.Wait()

	// A context already done never takes a slot.
	done, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := u.Authenticate(done, broker.Credentials{Login: "alice", Passcode: "pw"}); !errors.Is(err, broker.ErrAuthUnavailable) {
		t.Errorf("done ctx: err = %v", err)
	}
}

func TestLoadUsersErrors(t *testing.T) {
	good := hashOf(t, "pw")
	tests := []struct {
		name, text, want string
	}{
		{"no hash", "# c\nalice\n", ":2: want user:bcrypt-hash[:roles]"},
		{"too many fields", "alice:" + good + ":a:b\n", ":1: want user:bcrypt-hash[:roles]"},
		{"not a hash", "\n\nalice:plaintext\n", ":3: user \"alice\": not a bcrypt hash"},
		{"truncated hash", "alice:" + good[:59] + "\n", ":1: user \"alice\": not a bcrypt hash"},
		{"empty user", ":" + good + "\n", ":1: empty user name"},
		{"space in user", "al ice:" + good + "\n", ":1: user name \"al ice\" contains"},
		{"duplicate", "alice:" + good + "\nbob:" + good + "\nalice:" + good + "\n", ":3: user \"alice\" is already defined on line 1"},
		{"cost too high", "alice:$2a$31$" + good[7:] + "\n", ":1: user \"alice\": bcrypt cost 31 is outside 4..16"},
		{"empty role", "alice:" + good + ":admin,,ops\n", ":1: user \"alice\": empty role name"},
		{"space in role", "alice:" + good + ":ad min\n", ":1: user \"alice\": role name \"ad min\" contains"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "users", []byte(tt.text))
			_, err := LoadUsers(path)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.HasPrefix(err.Error(), path+tt.want) {
				t.Errorf("err = %q, want prefix %q", err, path+tt.want)
			}
			if strings.Contains(err.Error(), good) {
				t.Errorf("error quotes the hash: %q", err)
			}
		})
	}
	if _, err := LoadUsers(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestUsersReload(t *testing.T) {
	path := writeFile(t, "users", []byte("alice:"+hashOf(t, "one")+"\n"))
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	ok := func(login, pw string) bool {
		_, err := u.Authenticate(context.Background(), broker.Credentials{Login: login, Passcode: pw})
		return err == nil
	}
	if err := os.WriteFile(path, []byte("alice:"+hashOf(t, "two")+"\nbob:"+hashOf(t, "b")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := u.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok("alice", "one") || !ok("alice", "two") || !ok("bob", "b") {
		t.Error("reload did not take the new file")
	}
	if err := os.WriteFile(path, []byte("broken line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := u.Reload(); err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Errorf("reload of a broken file: err = %v", err)
	}
	if !ok("alice", "two") || !ok("bob", "b") {
		t.Error("a failed reload dropped the old users")
	}
}

func TestSetPassword(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	original := "# stompbox users\n\nbob:" + hashOf(t, "builder") + ":ops\n# the end\n"
	if err := os.WriteFile(path, []byte(original), 0o644); err != nil {
		t.Fatal(err)
	}
	// Add.
	if err := SetPassword(path, "alice", "wonderland", []string{"admin", "ops"}, testCost); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(string(data), "\n")
	if len(lines) != 6 || lines[0] != "# stompbox users" || lines[1] != "" || !strings.HasPrefix(lines[2], "bob:") ||
		lines[3] != "# the end" || !strings.HasPrefix(lines[4], "alice:$2a$04$") || !strings.HasSuffix(lines[4], ":admin,ops") || lines[5] != "" {
		t.Fatalf("after adding:\n%s", data)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	// Replace, dropping the roles.
	if err := SetPassword(path, "bob", "rebuilt", nil, testCost); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	lines = strings.Split(string(data), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[2], "bob:$2a$04$") || strings.Count(lines[2], ":") != 1 || !strings.HasPrefix(lines[4], "alice:") {
		t.Fatalf("after replacing:\n%s", data)
	}
	u, err := LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		login, pw string
		ok        bool
	}{{"bob", "rebuilt", true}, {"bob", "builder", false}, {"alice", "wonderland", true}} {
		p, err := u.Authenticate(context.Background(), broker.Credentials{Login: c.login, Passcode: c.pw})
		if (err == nil) != c.ok {
			t.Errorf("%s/%s: err = %v", c.login, c.pw, err)
		}
		if c.login == "alice" && err == nil && !slices.Equal(p.Roles, []string{"admin", "ops"}) {
			t.Errorf("alice roles = %v", p.Roles)
		}
	}
	// No temporary file left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the users file", len(entries))
	}
}

func TestSetPasswordCreatesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new-users")
	if err := SetPassword(path, "alice", "pw", nil, testCost); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "alice:$2a$04$") || strings.Count(string(data), "\n") != 1 {
		t.Errorf("file = %q", data)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
}

// TestSetPasswordAtomic: a refused update leaves the file byte for byte as
// it was, and the update is a rename (a reader holding the old file keeps
// reading the old contents).
func TestSetPasswordAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	before := "alice:" + hashOf(t, "pw") + "\nthis line is broken\n"
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	err := SetPassword(path, "bob", "pw", nil, testCost)
	if err == nil || !strings.Contains(err.Error(), path+":2:") {
		t.Errorf("err = %v, want the broken line named", err)
	}
	if data, _ := os.ReadFile(path); string(data) != before {
		t.Errorf("file changed by a refused update")
	}

	good := "alice:" + hashOf(t, "pw") + "\n"
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := SetPassword(path, "bob", "pw", nil, testCost); err != nil {
		t.Fatal(err)
	}
	old := make([]byte, 1024)
	n, _ := f.Read(old)
	if string(old[:n]) != good {
		t.Errorf("the old file was rewritten in place, not replaced")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%d directory entries, want 1", len(entries))
	}
}

func TestSetPasswordRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	long := strings.Repeat("p", 73)
	tests := []struct {
		name, user, pw string
		roles          []string
		cost           int
		want           string
	}{
		{"empty user", "", "pw", nil, testCost, "empty user name"},
		{"colon", "a:b", "pw", nil, testCost, "contains ':'"},
		{"space", "a b", "pw", nil, testCost, "whitespace"},
		{"tab", "a\tb", "pw", nil, testCost, "whitespace"},
		{"comment-like", "#a", "pw", nil, testCost, "starts with #"},
		{"empty password", "alice", "", nil, testCost, "empty password"},
		{"73 bytes", "alice", long, nil, testCost, "longer than bcrypt's 72-byte limit"},
		{"bad role", "alice", "pw", []string{"a,b"}, testCost, "role name \"a,b\""},
		{"cost too low", "alice", "pw", nil, 3, "cost 3 is outside 4..16"},
		{"cost too high", "alice", "pw", nil, 17, "cost 17 is outside 4..16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := SetPassword(path, tt.user, tt.pw, tt.roles, tt.cost)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			assertNoSecret(t, err, tt.pw)
			if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
				t.Error("a refused call wrote the file")
			}
		})
	}
	// Exactly 72 bytes is fine.
	if err := SetPassword(path, "alice", long[:72], nil, testCost); err != nil {
		t.Errorf("72-byte password: %v", err)
	}
}

func TestUsersStringHidesSecrets(t *testing.T) {
	u := loadUsersText(t, "alice:"+hashOf(t, "pw")+"\n")
	for _, s := range []string{u.String(), strings.TrimSpace(fmtV(u))} {
		if strings.Contains(s, "$2a$") {
			t.Errorf("String output shows a hash: %q", s)
		}
	}
}
