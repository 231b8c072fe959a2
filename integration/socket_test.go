package integration

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/backendtest"
)

// TestCLIPutKilledMidBody: `scribefs put ID -` beside a running mount,
// killed (kill -9) after sending part of its body, publishes nothing: the
// segment keeps its old bytes, and the mount logs the refused put.
func TestCLIPutKilledMidBody(t *testing.T) {
	e := newEnv(t, "")
	m := e.mount()
	old := backendtest.RandomBytes(1, 300_000)
	mustWriteFile(t, m.path(9), old)

	cmd := exec.Command(scribefs, "--config", e.cfgPath, "put", "9", "-")
	cmd.Env = cleanEnv()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// 3 MiB through a pipe: the client has sent most of it on the socket
	// by the time the pipe takes the last byte.
	if _, err := stdin.Write(backendtest.RandomBytes(2, 3<<20)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	stdin.Close()

	// Wait until the mount has dealt with the cut request: it logs the
	// failed put (a mount that published the prefix logs nothing, and the
	// file then shows the prefix).
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(m.logs.String(), "op=put") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got, err := os.ReadFile(m.path(9))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, old) {
		t.Fatalf("after a put killed mid-body segment 9 holds %d bytes, want the old %d", len(got), len(old))
	}
	if !strings.Contains(m.logs.String(), "op=put") {
		t.Fatalf("the mount did not log the refused put: %s", m.logs.String())
	}
	// A whole put still works and is read back exactly.
	data := backendtest.RandomBytes(3, 1<<20+5)
	e.mustRun(bytes.NewReader(data), "put", "9", "-")
	if got, _ := os.ReadFile(m.path(9)); !bytes.Equal(got, data) {
		t.Fatalf("a whole put read back %d bytes, want %d", len(got), len(data))
	}
	out := e.mustRun(nil, "get", "9", "-")
	if out != string(data) {
		t.Fatalf("get through the socket returned %d bytes, want %d", len(out), len(data))
	}
}
