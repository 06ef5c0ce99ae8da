// Package smallfs gives tests a small file system that really fills up: a
// tmpfs mounted with a size limit, whose writes fail with ENOSPC past it
// (tmpfs(5): "size: specify an upper limit on the size of the
// filesystem"). It needs root (CAP_SYS_ADMIN) and mount(2); where the test
// cannot mount one it skips with a message, unless
// REPUTE_TEST_REQUIRE_SMALLFS=1 (set by make test) makes that a failure.
package smallfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new directory and returns it;
// it is unmounted when the test ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size))
	if err != nil {
		msg := fmt.Sprintf("cannot mount a %d-byte tmpfs on %s (needs root and mount(2)): %v", size, dir, err)
		if os.Getenv("REPUTE_TEST_REQUIRE_SMALLFS") == "1" {
			t.Fatal(msg + " (REPUTE_TEST_REQUIRE_SMALLFS=1)")
		}
		t.Skip(msg + "; set REPUTE_TEST_REQUIRE_SMALLFS=1 to fail instead")
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until the file system has at most leave bytes
// free, and returns its path: removing it frees the space.
func Fill(t testing.TB, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("smallfs: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for Free(t, dir) > leave {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatalf("smallfs: filling %s: %v", dir, err)
		}
	}
	return path
}

// Free is the bytes available in dir's file system.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("smallfs: statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
