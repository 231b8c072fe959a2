package fs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// Tests of what the mount promises readers, writers and tools (issue 16),
// each through a real mount driven from other processes.

// sha256Hex is how fdctl's read reports what it read.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readReply is fdctl's reply to a read that got exactly b.
func readReply(b []byte) string { return fmt.Sprintf("ok %d %s", len(b), sha256Hex(b)) }

// pattern returns n bytes that differ from version to version and from
// offset to offset.
func pattern(version byte, n int) []byte {
	b := bytes.Repeat([]byte{0}, n)
	for i := range b {
		b[i] = version + byte(i/4096)
	}
	return b
}

// TestFsyncDirectory: fsync of the mount's directories succeeds (Python's
// atomic-write helpers, Go's dir.Sync(), `sync DIR`); renames and unlinks
// are stored by the time they return, so there is nothing left to do.
func TestFsyncDirectory(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	c := startFdctl(t)
	for _, dir := range []string{m.mnt, m.seg} {
		c.must("open d "+dir+" rdonly", "fsync d", "close d")
		mustRun(t, "sync", dir)
	}
}

// TestDistinctInodeNumbers: ids that used to share an inode number (2^63 and
// 2^64-2^32-4) have numbers of their own, so cp between them works and
// find -samefile tells them apart.
func TestDistinctInodeNumbers(t *testing.T) {
	m := mustMount(t, newTestStore(t, 1<<30), Options{})
	a, b := m.path("9223372036854775808"), m.path("18446744069414584316")
	mustSh(t, `printf aaa > "$1" && printf bbb > "$2"`, a, b)
	inos := mustSh(t, `stat -c %i "$1" "$2"`, a, b)
	if l := strings.Fields(inos); len(l) != 2 || l[0] == l[1] {
		t.Fatalf("inode numbers %q", inos)
	}
	mustRun(t, "cp", a, b)
	mustStored(t, m.store, 18446744069414584316, "aaa")
	if same := mustRun(t, "find", m.seg, "-samefile", a); strings.TrimSpace(same) != a {
		t.Fatalf("find -samefile %s: %q", a, same)
	}
}
