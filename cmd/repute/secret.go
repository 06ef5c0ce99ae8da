package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// secret is a secret setting of the configuration file. A secret is never a
// plain value in the file: a field X of type secret is set with
//
//	X_env: NAME    # read the environment variable NAME
//	X_file: PATH   # read the file PATH (trimmed); refused when group or others can read it
//
// and a bare "X:" key is refused (see decodeNode). Any section can hold
// one: a field Password of type secret tagged yaml:"password" is set by
// password_env or password_file.
type secret struct {
	Env  string // name of the environment variable holding the value
	File string // path of a file holding the value

	name string // the field's YAML name, for messages; set by decodeNode
}

// IsZero reports whether the secret is not configured at all.
func (s secret) IsZero() bool { return s.Env == "" && s.File == "" }

// Resolve returns the secret's value: "" when it is not configured, an
// error when it is configured but cannot be read. getenv nil is os.Getenv.
func (s secret) Resolve(getenv func(string) string) (string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	name := s.name
	if name == "" {
		name = "secret"
	}
	switch {
	case s.Env != "" && s.File != "":
		return "", fmt.Errorf("%s_env and %s_file are both set: keep one", name, name)
	case s.Env != "":
		v := strings.TrimSpace(getenv(s.Env))
		if v == "" {
			return "", fmt.Errorf("%s_env: environment variable %s is not set or empty", name, s.Env)
		}
		return v, nil
	case s.File != "":
		v, err := readSecretFile(s.File)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", name, err)
		}
		return v, nil
	}
	return "", nil
}

// errSecretFileMode is the kind of error readSecretFile returns for a file
// that group or others can read.
var errSecretFileMode = errors.New("readable by group or others")

// readSecretFile reads a file holding a secret, trimmed of white space. It
// refuses a file that group or others can read, naming its path and mode.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if err := checkSecretMode(path, st.Mode()); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return v, nil
}

// checkSecretMode refuses a secret file that group or others can read.
func checkSecretMode(path string, mode fs.FileMode) error {
	if mode.Perm()&0o044 != 0 {
		return fmt.Errorf("%s is %w (mode %04o): chmod 600 %s", path, errSecretFileMode, mode.Perm(), path)
	}
	return nil
}
