package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// alterRoot flips one byte of the merkle_root in id's sidecar and returns
// the altered root's hex.
func (e *env) alterRoot(t *testing.T, id uint64) string {
	t.Helper()
	key := fmt.Sprintf("segments/segment-%016x.meta.json", id)
	out, err := e.s3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(out.Body)
	out.Body.Close()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	root := m["merkle_root"].([]any)
	root[0] = float64(int(root[0].(float64)) ^ 0xff)
	var hex strings.Builder
	for _, v := range root {
		fmt.Fprintf(&hex, "%02x", int(v.(float64)))
	}
	body, _ := json.Marshal(m)
	e.putRaw(t, key, body)
	return hex.String()
}

// TestVerifyMerkleRoot: verify recomputes the Merkle root of every segment
// whose sidecar records one and names each mismatch; segments whose root
// matches, and sidecars without a root, are not reported.
func TestVerifyMerkleRoot(t *testing.T) {
	for _, setting := range []string{"none", "gzip"} {
		t.Run(setting, func(t *testing.T) {
			e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \""+setting+"\"\n")
			for _, id := range []uint64{5, 6, 7} {
				path := filepath.Join(e.dir, fmt.Sprint(id))
				mustWriteFile(t, path, nodeSegment(id, 1, 40, 100000)) // 4 MiB
				e.mustRun(nil, "put", fmt.Sprint(id), path)
			}
			e.mustRun(nil, "archive", "--all")
			if out := e.mustRun(nil, "verify"); !strings.Contains(out, "ok: no problems found") {
				t.Fatalf("verify of a consistent bucket:\n%s", out)
			}
			altered := e.alterRoot(t, 6)
			// 7's sidecar loses its root: nothing to check.
			key := "segments/segment-0000000000000007.meta.json"
			out, _ := e.s3().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
			raw, _ := io.ReadAll(out.Body)
			out.Body.Close()
			var m map[string]any
			json.Unmarshal(raw, &m)
			delete(m, "merkle_root")
			body, _ := json.Marshal(m)
			e.putRaw(t, key, body)

			st5, st6 := e.mustRun(nil, "stat", "5"), e.mustRun(nil, "stat", "6")
			t.Logf("stat 6 after altering its merkle_root:\n%s", st6)
			if !regexp.MustCompile(`merkle_root: [0-9a-f]{64}\nmerkle_checked: yes, the bytes have this root\n`).MatchString(st5) ||
				!strings.Contains(st6, "merkle_root: "+altered+"\nmerkle_checked: yes, MISMATCH: segment 6: merkle root ") {
				t.Fatalf("stat 5:\n%s\nstat 6:\n%s", st5, st6)
			}
			if st7 := e.mustRun(nil, "stat", "7"); strings.Contains(st7, "merkle") {
				t.Fatalf("stat of a segment whose sidecar has no root:\n%s", st7)
			}
			r := e.run(nil, "verify")
			t.Logf("verify after altering segment 6's merkle_root (exit %d):\n%s", r.code, r.stdout)
			re := regexp.MustCompile(`problem: segment 6 \(cold\): merkle: segment 6: merkle root [0-9a-f]{64}, sidecar says ` + altered + `\n`)
			if r.code != 1 || !re.MatchString(r.stdout) || strings.Contains(r.stdout, "segment 5") || strings.Contains(r.stdout, "segment 7") ||
				!strings.Contains(r.stdout, "1 problems") {
				t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestZstdSharedBucketWarns: a zstd mount on a bucket that holds Scribe
// Ledger sidecars logs once that nodes cannot read what it archives; on a
// bucket without them, and with gzip, it does not.
func TestZstdSharedBucketWarns(t *testing.T) {
	const warning = "nodes cannot read zstd segments"
	for _, tc := range []struct {
		setting string
		shared  bool
		want    int
	}{{"zstd", true, 1}, {"zstd", false, 0}, {"gzip", true, 0}} {
		e := newEnv(t, "archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \""+tc.setting+"\"\n")
		if tc.shared {
			e.uploadFixtures(t)
		}
		m := e.mount()
		m.unmount()
		if got := strings.Count(m.logs.String(), warning); got != tc.want {
			t.Errorf("compression %s, bucket with sidecars %v: warning logged %d times, want %d:\n%s", tc.setting, tc.shared, got, tc.want, m.logs.String())
		}
	}
}

// TestVerifyMerkleOnRead: with [tiering] verify_merkle = true, a whole read
// of a cold segment through the mount checks the Merkle root its sidecar
// records: EIO and a log line naming the segment on a mismatch; a good
// segment and a read of part of the damaged one still work, and without
// the setting nothing is checked.
func TestVerifyMerkleOnRead(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint("verify_merkle=", on), func(t *testing.T) {
			e := newEnv(t, fmt.Sprintf("archive_after_secs = 86400\ncheck_interval_secs = 3600\ncompression = \"gzip\"\nverify_merkle = %v\n", on))
			for _, id := range []uint64{5, 6} {
				path := filepath.Join(e.dir, fmt.Sprint(id))
				mustWriteFile(t, path, nodeSegment(id, 1, 30, 100000)) // 3 MiB: several blocks
				e.mustRun(nil, "put", fmt.Sprint(id), path)
			}
			e.mustRun(nil, "archive", "--all")
			e.alterRoot(t, 6)
			m := e.mount()
			if out, err := shErr(m.Segs(), "cat 5 | wc -c"); err != nil || strings.TrimSpace(out) != fmt.Sprint(30*(100000+7+16)+32) {
				t.Fatalf("cat of a good segment: %q, %v", out, err)
			}
			if _, err := shErr(m.Segs(), "dd if=6 bs=4096 skip=100 count=2 status=none > /dev/null"); err != nil {
				t.Fatalf("partial read of segment 6: %v", err)
			}
			out, err := shErr(m.Segs(), "cat 6 > /dev/null")
			if on {
				if err == nil || !strings.Contains(out, "Input/output error") {
					t.Fatalf("cat of a segment whose merkle root mismatches: %q, %v; want EIO", out, err)
				}
				m.unmount()
				logs := m.logs.String()
				if !strings.Contains(logs, "merkle root mismatch") || !strings.Contains(logs, "segment=6") {
					t.Fatalf("no log line naming segment 6:\n%s", logs)
				}
				t.Logf("cat 6: %s; log: %s", strings.TrimSpace(out), grepLine(logs, "merkle root mismatch"))
			} else if err != nil {
				t.Fatalf("without verify_merkle, cat 6: %q, %v", out, err)
			}
		})
	}
}

func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
