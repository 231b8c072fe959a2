package fs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCleanSpool: CleanSpool removes the spool files createSpool makes and
// nothing else; a missing directory is not an error.
func TestCleanSpool(t *testing.T) {
	dir := t.TempDir()
	f, err := createSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !isSpoolName(filepath.Base(f.Name())) {
		t.Fatalf("createSpool made %q, which CleanSpool would not remove", f.Name())
	}
	if _, err := os.Stat(f.Name()); !os.IsNotExist(err) {
		t.Fatalf("spool file not unlinked at once: %v", err)
	}
	ours := []string{spoolPrefix + "1", spoolPrefix + "4294967295"}
	others := []string{"notes.txt", spoolPrefix, spoolPrefix + "1x", spoolPrefix + "-1", "scribefs-spool-1", "x" + spoolPrefix + "1"}
	for _, name := range append(append([]string{}, ours...), others...) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory with a spool name is not a spool file either.
	if err := os.Mkdir(filepath.Join(dir, spoolPrefix+"2"), 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := CleanSpool(dir)
	if err != nil || n != len(ours) {
		t.Fatalf("CleanSpool = %d, %v; want %d", n, err, len(ours))
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := append(append([]string{}, others...), spoolPrefix+"2")
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("left %q, want %q", left, want)
	}
	if n, err := CleanSpool(filepath.Join(dir, "missing")); n != 0 || err != nil {
		t.Fatalf("missing directory: %d, %v", n, err)
	}
}
