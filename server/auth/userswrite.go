package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// usersFileMode keeps hashes away from other local users: a bcrypt hash
// can be attacked offline by whoever reads it.
const usersFileMode = 0o600

// SetPassword adds user to the users file at path, or replaces the user's
// line, hashing password with bcrypt at cost (0: DefaultCost; at most
// MaxCost). Every other line, comments included, is kept as it was. The file is created if
// missing and always written whole, atomically (a temporary file renamed
// over it) with mode 0600, so a running broker's Reload sees either the old
// file or the new one. It refuses to write a file LoadUsers would refuse.
// Two SetPassword calls on one file at once may lose one of the updates:
// callers serialize them (it is an operator's tool).
func SetPassword(path, user, password string, roles []string, cost int) error {
	if err := checkUserName(user); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if password == "" {
		return errors.New("set password: empty password")
	}
	if len(password) > maxPasswordLen {
		return fmt.Errorf("set password: password longer than bcrypt's %d-byte limit", maxPasswordLen)
	}
	for _, r := range roles {
		if err := checkRole(r); err != nil {
			return fmt.Errorf("set password: %w", err)
		}
	}
	if cost == 0 {
		cost = DefaultCost
	}
	if cost < bcrypt.MinCost || cost > MaxCost {
		return fmt.Errorf("set password: bcrypt cost %d is outside %d..%d", cost, bcrypt.MinCost, MaxCost)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		// bcrypt's errors never quote the password.
		return fmt.Errorf("set password: %w", err)
	}

	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("set password: %w", err)
	}
	line := user + ":" + string(hash)
	if len(roles) > 0 {
		line += ":" + strings.Join(roles, ",")
	}
	data := replaceUserLine(string(old), user, line)
	if _, _, err := parseUsers(path, []byte(data)); err != nil {
		return fmt.Errorf("set password: the file would not load: %w", err)
	}
	if err := writeFileAtomic(path, []byte(data), usersFileMode); err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return nil
}

// replaceUserLine returns the users file content with user's line replaced
// by line, or line appended if user has none. The result ends in a newline.
func replaceUserLine(content, user, line string) string {
	lines := strings.Split(content, "\n")
	if n := len(lines); lines[n-1] == "" {
		lines = lines[:n-1] // the final newline, not an empty last line
	}
	replaced := false
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		if name, _, _ := strings.Cut(t, ":"); name == user {
			lines[i] = line
			replaced = true
			break
		}
	}
	if !replaced {
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n") + "\n"
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path: a crash leaves the old file or the new one, never a
// torn one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// The rename is durable only once the directory is synced; failing to
	// sync it (some file systems refuse) does not undo the write.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
