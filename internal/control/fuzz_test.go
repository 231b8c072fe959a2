package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scribefs/scribefs/backend/mem"
	"github.com/scribefs/scribefs/cache"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// FuzzRequest feeds arbitrary bytes to the socket's request handling as
// an HTTP/1.1 request, against a store in memory. Whatever arrives, the
// server must not panic (other than the deliberate abort of a download
// whose source failed), must answer an error with a JSON body naming its
// kind, and must never answer a bad request with a 5xx; a put it accepts
// must hold exactly the body it was sent.
func FuzzRequest(f *testing.F) {
	// Seeds are in testdata/fuzz/FuzzRequest.
	hot := mem.New(segment.TierHot)
	cold := mem.New(segment.TierCold)
	store, err := tier.New(hot, hot.Index(), cold, cache.New(1<<20), tier.Config{ArchiveAfter: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := store.Put(context.Background(), 1, bytes.NewReader([]byte("one")), 3, time.Time{}); err != nil {
		f.Fatal(err)
	}
	mux := newMux(&Local{Store: store}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		var sent bytes.Buffer
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(req.Body, &sent), req.Body}
		rec := httptest.NewRecorder()
		func() {
			defer func() {
				if r := recover(); r != nil && r != http.ErrAbortHandler {
					t.Fatalf("panic: %v", r)
				}
			}()
			mux.ServeHTTP(rec, req)
		}()
		if rec.Code >= 500 && !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("%s %s: status %d with body %q", req.Method, req.URL, rec.Code, rec.Body.Bytes())
		}
		if req.Method == "PUT" && rec.Code == http.StatusOK {
			id, err := segment.ParseID(req.PathValue("id"))
			if err != nil {
				t.Fatalf("PUT %s accepted: %v", req.URL, err)
			}
			var got bytes.Buffer
			if _, err := Get(context.Background(), &Local{Store: store}, id, &got); err != nil || !bytes.Equal(got.Bytes(), sent.Bytes()) {
				t.Fatalf("PUT %s accepted %q; the store holds %q (%v)", req.URL, sent.Bytes(), got.Bytes(), err)
			}
		}
		// Errors of the handlers are JSON; net/http's own replies for
		// requests no route matches are plain text.
		if rec.Code >= 400 && rec.Header().Get("Content-Type") == "application/json" {
			var we wireError
			if err := json.Unmarshal(rec.Body.Bytes(), &we); err != nil || we.Kind == "" {
				t.Fatalf("%s %s: status %d with body %q", req.Method, req.URL, rec.Code, rec.Body.Bytes())
			}
			if rec.Code >= 500 && we.Kind == "other" {
				t.Fatalf("%s %s: 500 other: %s", req.Method, req.URL, we.Message)
			}
		}
	})
}
