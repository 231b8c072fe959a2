package faultproxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/internal/faultproxy"
	"github.com/scribefs/scribefs/internal/miniotest"
	"github.com/scribefs/scribefs/segment"
)

// TestResumedWholeReadChecked: a whole read cut mid-body is resumed by the
// retry wrapper with a ranged GET, which the backend cannot check as a
// whole; a byte flipped in that resumed part must still fail the read with
// a checksum error (the wrapper carries the running CRC32C across the
// resume), and with the fault gone the same read succeeds.
var ctx = context.Background()

func TestResumedWholeReadChecked(t *testing.T) {
	srv := miniotest.Start(t)
	st := mustStack(t, srv, srv.NewBucket(t))
	id := segment.ID(0x51)
	data := backendtest.RandomBytes(51, 3<<20+17)
	if _, err := st.b.Put(ctx, id, bytes.NewReader(data), backend.PutOptions{Size: int64(len(data))}); err != nil {
		t.Fatal(err)
	}
	st.proxy.Set(
		faultproxy.Fault{Kind: faultproxy.Truncate, Method: "GET", PathContains: key(id), FirstN: 1, After: 1 << 20},
		faultproxy.Fault{Kind: faultproxy.Corrupt, Method: "GET", PathContains: key(id), After: 1000},
	)
	r, err := st.b.Get(ctx, id, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if n := st.proxy.Count("GET", key(id)+".bin"); n != 2 {
		t.Fatalf("%d GETs, want 2 (the cut one and its resumption): %q", n, st.proxy.Log())
	}
	if !errors.Is(err, segment.ErrChecksum) {
		t.Fatalf("resumed whole read with a flipped byte: %d bytes (equal to the stored: %v), err %v; want a checksum error",
			len(got), bytes.Equal(got, data), err)
	}
	st.proxy.Set(faultproxy.Fault{Kind: faultproxy.Truncate, Method: "GET", PathContains: key(id), FirstN: 1, After: 1 << 20})
	r, err = st.b.Get(ctx, id, backend.Whole)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("resumed whole read, no corruption: err %v, equal %v", err, bytes.Equal(got, data))
	}
}
