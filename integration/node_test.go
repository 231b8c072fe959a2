package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/scribefs/scribefs/segment/ledger"
)

// errNoSegment is what a node's retrieve_segment returns (Ok(None)) for a
// segment without a sidecar.
var errNoSegment = errors.New("no such segment")

// nodeRead reads segment id from the bucket exactly as a Scribe Ledger node
// does (upstream ArchivalManager::retrieve_segment): the sidecar first
// (missing: no segment; every SegmentMetadata field required, unknown ones
// ignored), then the .bin; when is_compressed, ONE gzip member, as flate2's
// GzDecoder reads it (its CRC checked, whatever follows ignored); then a
// bincode decode of the bytes as a Segment into a map. It also recomputes
// the merkle root, when the sidecar carries one, as a node that checked it
// would.
func (e *env) nodeRead(id uint64) (seg *ledger.Segment, rootChecked bool, err error) {
	ctx := context.Background()
	get := func(key string) ([]byte, error) {
		out, err := e.s3().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
		if err != nil {
			var nk *types.NoSuchKey
			if errors.As(err, &nk) {
				return nil, errNoSegment
			}
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	}
	meta, err := get(fmt.Sprintf("segments/segment-%016x.meta.json", id))
	if err != nil {
		return nil, false, err
	}
	var sc struct {
		SegmentID      *uint64         `json:"segment_id"`
		CreatedAt      *uint64         `json:"created_at"`
		ArchivedAt     *uint64         `json:"archived_at"`
		OriginalSize   *uint64         `json:"original_size"`
		CompressedSize *uint64         `json:"compressed_size"`
		IsCompressed   *bool           `json:"is_compressed"`
		EntryCount     *uint64         `json:"entry_count"`
		MerkleRoot     json.RawMessage `json:"merkle_root"`
	}
	if err := json.Unmarshal(meta, &sc); err != nil {
		return nil, false, fmt.Errorf("sidecar: %w", err)
	}
	if sc.SegmentID == nil || sc.CreatedAt == nil || sc.ArchivedAt == nil || sc.OriginalSize == nil ||
		sc.CompressedSize == nil || sc.IsCompressed == nil || sc.EntryCount == nil {
		return nil, false, fmt.Errorf("sidecar lacks a required field: %s", meta)
	}
	data, err := get(objectKey(id))
	if err != nil {
		return nil, false, fmt.Errorf(".bin: %w", err)
	}
	if *sc.IsCompressed {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, false, fmt.Errorf("GzDecoder: %w", err)
		}
		zr.Multistream(false)
		if data, err = io.ReadAll(zr); err != nil {
			return nil, false, fmt.Errorf("GzDecoder: %w", err)
		}
	}
	seg, err = ledger.Decode(data)
	if err != nil {
		return nil, false, fmt.Errorf("bincode: %w", err)
	}
	// into a HashMap: a key that occurs twice keeps its last value
	m := map[string][]byte{}
	for _, en := range seg.Entries {
		m[string(en.Key)] = en.Value
	}
	if len(m) != len(seg.Entries) {
		return nil, false, fmt.Errorf("bincode: duplicate keys")
	}
	if uint64(len(m)) != *sc.EntryCount || seg.Size != *sc.OriginalSize || seg.Timestamp != *sc.CreatedAt {
		return nil, false, fmt.Errorf("sidecar %s does not describe the segment (%d entries, size %d, timestamp %d)", meta, len(m), seg.Size, seg.Timestamp)
	}
	if len(sc.MerkleRoot) > 0 {
		want, err := ledger.ParseRoot(sc.MerkleRoot)
		if err != nil {
			return nil, false, err
		}
		if got, _ := ledger.MerkleRoot(seg.Entries); got != want {
			return nil, false, fmt.Errorf("merkle root %s, sidecar says %s", got, want)
		}
		rootChecked = true
	}
	return seg, rootChecked, nil
}

// nodeSegment makes a segment of n entries of size-byte values whose
// encoding is about n*size bytes.
func nodeSegment(id, ts uint64, n, size int) []byte {
	s := &ledger.Segment{ID: id, Timestamp: ts}
	for i := range n {
		w := []byte(fmt.Sprintf("v%d-%d ", ts, i))
		v := bytes.Repeat(w, size/len(w)+1)[:size]
		s.Entries = append(s.Entries, ledger.Entry{Key: []byte(fmt.Sprintf("k%06d", (i*7919)%n)), Value: v})
	}
	return ledger.Encode(s)
}

// describe says what a node got for id, for the table in the log.
func (e *env) describe(id uint64, want []byte) string {
	seg, checked, err := e.nodeRead(id)
	switch {
	case errors.Is(err, errNoSegment):
		return "no such segment"
	case err != nil:
		return "ERROR " + err.Error()
	case want != nil && !bytes.Equal(ledger.Encode(seg), want):
		return "WRONG SEGMENT"
	}
	if !checked {
		return fmt.Sprintf("segment %d, %d entries (sidecar has no merkle_root)", seg.ID, len(seg.Entries))
	}
	return fmt.Sprintf("segment %d, %d entries, merkle root matches", seg.ID, len(seg.Entries))
}

func (e *env) putRaw(t *testing.T, key string, body []byte) {
	t.Helper()
	if _, err := e.s3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

// waitSidecar waits up to 20s for id's sidecar (write-through uploads in
// the background).
func (e *env) waitSidecar(t *testing.T, id uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !e.keyExists(fmt.Sprintf("segments/segment-%016x.meta.json", id)) {
		if time.Now().After(deadline) {
			t.Fatalf("no sidecar for segment %d after 20s", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNodeReadsWhatScribefsWrites: for compression none and gzip, segments
// under 1 MiB and of several MiB (several blocks), archived, written
// through, overwritten (through the mount, with a segment and with bytes
// that are none), renamed and removed, a reader that does exactly what a
// Scribe Ledger node does gets the segment scribefs holds, or no segment
// where scribefs holds none; zstd objects are not offered to nodes.
func TestNodeReadsWhatScribefsWrites(t *testing.T) {
	var table []string
	row := func(setting, size, op, got string) {
		table = append(table, fmt.Sprintf("| %s | %s | %s | %s |", setting, size, op, got))
	}
	sizes := []struct {
		name    string
		n, size int
	}{{"200 KiB", 50, 4 << 10}, {"5 MiB", 20, 256 << 10}}
	for _, setting := range []string{"none", "gzip", "zstd"} {
		t.Run(setting, func(t *testing.T) {
			e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \""+setting+"\"\n")
			wt := newEnv(t, "archive_after_secs = 0\ncheck_interval_secs = 3600\ncompression = \""+setting+"\"\n")
			expect := func(id uint64, want []byte, got string) {
				t.Helper()
				ok := strings.HasPrefix(got, "segment ") && want != nil || got == "no such segment" && want == nil
				if setting == "zstd" {
					ok = got == "no such segment"
				}
				if !ok {
					t.Errorf("segment %d: node got %q", id, got)
				}
			}
			// A segment a node archived (gzip, with its sidecar),
			// overwritten through the mount with another segment.
			up := nodeSegment(99, 5, 30, 1000)
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(up)
			zw.Close()
			e.putRaw(t, objectKey(99), gz.Bytes())
			e.putRaw(t, "segments/segment-0000000000000063.meta.json", []byte(fmt.Sprintf(
				`{"segment_id":99,"created_at":5,"archived_at":6,"original_size":%d,"compressed_size":%d,"is_compressed":true,"entry_count":30}`,
				30*1007, gz.Len())))
			row(setting, "30 KiB", "node's own segment, as the node archived it", e.describe(99, up))
			mup := e.mount()
			upNew := nodeSegment(99, 6, 31, 1000)
			mustWriteFile(t, filepath.Join(e.dir, "up"), upNew)
			sh(t, mup.Segs(), "cp "+filepath.Join(e.dir, "up")+" 99")
			mup.unmount()
			e.mustRun(nil, "archive", "99")
			got := e.describe(99, upNew)
			row(setting, "30 KiB", "node's segment overwritten through the mount", got)
			expect(99, upNew, got)

			m := e.mount()
			for i, sz := range sizes {
				base := uint64(10 * (i + 1))
				put := func(env *env, id uint64, ts uint64) []byte {
					body := nodeSegment(id, ts, sz.n, sz.size)
					path := filepath.Join(env.dir, fmt.Sprintf("seg-%d", id))
					mustWriteFile(t, path, body)
					env.mustRun(nil, "put", fmt.Sprint(id), path)
					return body
				}
				// archive
				id := base
				body := put(e, id, 1)
				e.mustRun(nil, "archive", fmt.Sprint(id))
				got := e.describe(id, body)
				row(setting, sz.name, "archive", got)
				expect(id, body, got)

				// write-through
				wbody := put(wt, id, 2)
				if setting != "zstd" {
					wt.waitSidecar(t, id)
				} else {
					time.Sleep(2 * time.Second)
				}
				got = wt.describe(id, wbody)
				row(setting, sz.name, "write-through", got)
				expect(id, wbody, got)

				// overwrite through the mount with another segment
				nbody := nodeSegment(id, 3, sz.n+1, sz.size)
				src := filepath.Join(e.dir, "new")
				mustWriteFile(t, src, nbody)
				sh(t, m.Segs(), fmt.Sprintf("cp %s %d", src, id))
				e.mustRun(nil, "archive", fmt.Sprint(id))
				got = e.describe(id, nbody)
				row(setting, sz.name, "overwrite (segment)", got)
				expect(id, nbody, got)

				// rename onto another id (mv through the mount), archived
				sh(t, m.Segs(), fmt.Sprintf("mv %d %d", id, id+1))
				e.mustRun(nil, "archive", fmt.Sprint(id+1))
				got = e.describe(id+1, nbody)
				row(setting, sz.name, "rename onto an id", got+"; old id: "+e.describe(id, nil))
				expect(id+1, nbody, got)
				expect(id, nil, e.describe(id, nil))

				// overwrite with bytes that are no segment
				sh(t, m.Segs(), fmt.Sprintf("head -c %d /dev/urandom > %d", sz.n*sz.size, id+1))
				e.mustRun(nil, "archive", fmt.Sprint(id+1))
				got = e.describe(id+1, nil)
				row(setting, sz.name, "overwrite (not a segment)", got)
				expect(id+1, nil, got)

				// rm
				body = put(e, id+2, 4)
				e.mustRun(nil, "archive", fmt.Sprint(id+2))
				sh(t, m.Segs(), fmt.Sprintf("rm %d", id+2))
				got = e.describe(id+2, nil)
				if e.objectExists(id+2) || e.keyExists(fmt.Sprintf("segments/segment-%016x.meta.json", id+2)) {
					got += " (BUT an object is left)"
				}
				row(setting, sz.name, "rm", got)
				expect(id+2, nil, got)

				// and scribefs reads back what it wrote
				if b, err := os.ReadFile(m.path(id + 1)); err != nil || len(b) != sz.n*sz.size {
					t.Errorf("mount read of %d: %d bytes, %v", id+1, len(b), err)
				}
			}
		})
	}
	sort.Strings(table)
	t.Logf("what a node reads:\n| setting | size | operation | node got |\n|---|---|---|---|\n%s", strings.Join(table, "\n"))
}
