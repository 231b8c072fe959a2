// Package control is how the command line reaches a store: directly when no
// mount is running, or through the running mount process over a unix socket
// beside the hot-tier file (bbolt's file lock admits one process, so a second
// process must never open the file while a mount holds it).
//
// API is the one set of operations both paths offer. Local adapts a
// tier.Store; Client speaks to a Server over the socket. The socket is
// created mode 0600 and the server also checks each caller's uid through
// the peer credentials, so it opens no door that a private mount keeps shut.
package control

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// API is what the command line does with a store.
type API interface {
	Stat(ctx context.Context, id segment.ID) (segment.Info, error)
	List(ctx context.Context, fn func(segment.Info) error) error
	// Open pins the current version of a segment for one whole read from
	// its start. Read it with Get, which checks what arrived.
	Open(ctx context.Context, id segment.ID) (Object, error)
	Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error)
	Delete(ctx context.Context, id segment.ID) error
	Archive(ctx context.Context, id segment.ID) error
	// HotSegments lists what `archive --all` would move.
	HotSegments(ctx context.Context) ([]segment.Info, error)
	Health(ctx context.Context) error
	Status(ctx context.Context) (Status, error)
	// Verify checks every segment in every tier; see Local.Verify.
	Verify(ctx context.Context, opts VerifyOptions, progress VerifyProgress) (VerifyReport, error)
	Close() error
}

// Object is one version of a segment, pinned when it was opened: its reads
// give exactly Info().Size bytes of that version, then io.EOF, or fail.
// An Object from a Client checks the length and the CRC32C of what
// arrived before it reports io.EOF.
type Object interface {
	io.ReadCloser
	Info() segment.Info
}

// Get copies one whole version of segment id to w and returns its Info.
// On failure some bytes may have been written: a caller writing a file
// writes it aside and renames it into place only when Get succeeds.
func Get(ctx context.Context, api API, id segment.ID, w io.Writer) (segment.Info, error) {
	obj, err := api.Open(ctx, id)
	if err != nil {
		return segment.Info{}, err
	}
	defer obj.Close()
	info := obj.Info()
	n, err := io.CopyBuffer(w, obj, make([]byte, 1<<20))
	if err == nil && n != info.Size {
		err = fmt.Errorf("segment %d: read %d of its %d bytes", id, n, info.Size)
	}
	if err != nil {
		return info, err
	}
	return info, nil
}

// Status summarises a store for `scribefs status`.
type Status struct {
	Mounted     bool   `json:"mounted"`
	Mountpoint  string `json:"mountpoint,omitempty"`
	HotPath     string `json:"hot_path"`
	HotBytes    int64  `json:"hot_bytes"`
	HotMaxBytes int64  `json:"hot_max_bytes"`
	HotCount    int    `json:"hot_segments"`
	ColdTier    string `json:"cold_tier"`
	CacheBytes  int64  `json:"cache_bytes"`
	CacheMax    int64  `json:"cache_max_bytes"`
	CacheHits   int64  `json:"cache_hits"`
	CacheMisses int64  `json:"cache_misses"`
	Archived    int64  `json:"archived"`
	ArchiveErrs int64  `json:"archive_errors"`
	ChecksumErr int64  `json:"checksum_errors"`

	CacheEvictions int64 `json:"cache_evictions"`
	ColdFetches    int64 `json:"cold_fetches"`
	ColdFetchBytes int64 `json:"cold_fetch_bytes"`
	// BacklogSegments and BacklogBytes are the hot segments older than
	// archive_after that the archiver has yet to move.
	BacklogSegments int   `json:"archive_backlog_segments"`
	BacklogBytes    int64 `json:"archive_backlog_bytes"`
	// Lease is the writer lease of the bucket as this process sees it:
	// "held", "lost: <why>", or empty when no lease applies (no cold
	// tier, read-only, or no mount running).
	Lease        string    `json:"lease,omitempty"`
	LeaseHolder  string    `json:"lease_holder,omitempty"`
	LeaseExpires time.Time `json:"lease_expires,omitzero"`
	// RecentErrors are the last warning and error log lines of the
	// process serving the store, oldest first.
	RecentErrors []string `json:"recent_errors,omitempty"`
	// MetricsAddr is where the mount serves /metrics, if anywhere.
	MetricsAddr string `json:"metrics_addr,omitempty"`
}

// Local runs the API on a store opened in this process.
type Local struct {
	Store *tier.Store
	// Describe fills in what the store itself does not know.
	Describe func(*Status)
	// OnClose releases the store's backends.
	OnClose func() error
}

var _ API = (*Local)(nil)

func (l *Local) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	return l.Store.Stat(ctx, id)
}

func (l *Local) List(ctx context.Context, fn func(segment.Info) error) error {
	return l.Store.List(ctx, fn)
}

func (l *Local) Open(ctx context.Context, id segment.ID) (Object, error) {
	r, err := l.Store.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	return &localObject{SectionReader: io.NewSectionReader(r, 0, r.Info().Size), r: r}, nil
}

// localObject reads a pinned tier.Reader from its start.
type localObject struct {
	*io.SectionReader
	r *tier.Reader
}

func (o *localObject) Info() segment.Info { return o.r.Info() }
func (o *localObject) Close() error       { return o.r.Close() }

func (l *Local) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	return l.Store.Put(ctx, id, r, size, mtime)
}

func (l *Local) Delete(ctx context.Context, id segment.ID) error { return l.Store.Delete(ctx, id) }

func (l *Local) Archive(ctx context.Context, id segment.ID) error { return l.Store.Archive(ctx, id) }

func (l *Local) HotSegments(ctx context.Context) ([]segment.Info, error) {
	return l.Store.HotSegments(ctx)
}

func (l *Local) Health(ctx context.Context) error { return l.Store.Health(ctx) }

func (l *Local) Status(ctx context.Context) (Status, error) {
	s := l.Store.Stats(ctx)
	st := Status{
		HotBytes: s.HotBytes, CacheBytes: s.CacheBytes, CacheMax: s.CacheMaxBytes,
		CacheHits: s.CacheHits, CacheMisses: s.CacheMisses, Archived: s.Archived,
		ArchiveErrs: s.ArchiveErrors, ChecksumErr: s.ChecksumErrors, ColdTier: "none",
		CacheEvictions: s.CacheEvictions, ColdFetches: s.ColdFetches, ColdFetchBytes: s.ColdFetchBytes,
		BacklogSegments: s.BacklogSegments, BacklogBytes: s.BacklogBytes,
	}
	if hot, err := l.Store.HotSegments(ctx); err == nil {
		st.HotCount = len(hot)
	}
	if l.Describe != nil {
		l.Describe(&st)
	}
	return st, nil
}

func (l *Local) Close() error {
	if l.OnClose != nil {
		return l.OnClose()
	}
	return nil
}
