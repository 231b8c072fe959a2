// Package tier is the segment store that the filesystem and the command line
// use: a hot tier (Hot: the bbolt file), an optional cold tier (any
// backend.Backend, in practice S3 behind the retry wrapper), an index of the
// cold tier kept beside the hot tier (Index), and a byte-bounded read-through
// cache of cold blocks.
//
// Reads look in the hot tier, then the cold tier through the cache; writes go
// to the hot tier; deletes reach every tier; listings are the union. The
// archiver moves segments hot to cold (Archive, and the policy loop in Run);
// the reconciler keeps the index in line with the bucket (Reconcile) and
// carries out deferred cold deletes (ReplayTombstones).
//
// tier never sees S3, bbolt or FUSE types: it composes interfaces that are
// assembled elsewhere (cmd/scribefs).
//
// # One record per segment
//
// Everything the store knows of a segment is one record (backend.Record),
// kept by the Index in the hot tier's file: its hot version H, its indexed
// cold object C, a pending cold delete T (a tombstone naming the object's
// version, or "" for any), a flag U set while an upload may have reached
// the bucket unrecorded, and a change number N. Every transition of a
// record is one transaction of the Index that advances N from one counter,
// so N names one state, and a step that read a record can check in the
// transaction that commits it whether anything changed since. C and T are
// never both set. A record left with nothing keeps N until a reconcile pass
// that began after it has ended.
//
// The states (— is unset):
//
//	H    C    T    what readers see
//	—    —    —    no segment (absent, or a deleted marker keeping N)
//	h    —    —    h: written, not archived
//	h    c    —    h; c is an older version in the bucket, masked
//	—    c    —    c: archived
//	h    —    t    h; an older object t in the bucket is to be deleted
//	—    —    t    no segment; its object t is to be deleted
//
// U may be set beside H (an upload started, its outcome not recorded yet).
//
// The transitions, who performs them, and what each checks before it
// commits (L(id) is the segment's cold lock, below):
//
//	transition       by                   holds     commits only if                  then
//	put              Put, PutStream       —         (unconditional)                  H=new (old H is garbage)
//	write-through    Put                  L(id)     H is still this put's version    as archive-start, -complete
//	archive-start    archiver             L(id)     H is the version to upload       U=set (then the upload)
//	archive-complete archiver             L(id)     H is the uploaded version        C=uploaded, H=—, T=—, U=—
//	                                                (a failed upload leaves U set: it may have landed)
//	                                                H is another version             C=uploaded (older), T=—
//	                                                H=— (deleted, renamed away)      T=uploaded (garbage), deleted at once
//	delete           Delete               L(id)     the object (any version if U)    H=—, C=—, U=—, N advanced
//	                                                was deleted first;               even if nothing was known
//	                                                S3 unavailable                   H=—, C=—, T=C's version (or "" if unknown)
//	                                                a permanent failure              nothing (rm fails, segment as it was)
//	delete-deferred  Delete, L(id) busy   —         the record is live               H=—, C=—, U=—, T="" (the holder or a replay deletes it)
//	hydrate          Rename of cold-only  —         H=— and C is the copied version  H=copy of C
//	rename           Rename               L(from)   from has H (else retry hydrate)  to.H=from.H; from as delete
//	set-mtime        SetModTime           —         the record is live               H's or C's mtime
//	learn            a stat before the    —         N unchanged since before the     C=stat
//	                 first listing                  S3 stat, C=— and T=—
//	sums             reader               —         C is still the version read,     C.sums=the object's (recorded,
//	                                                C has no block sums              or from one checked whole read)
//	resolve          reconciler, reader   —         N unchanged since before the     C=the full info
//	                                                stat, C still unresolved
//	reconcile-apply  Reconcile            —         N <= the pass's start, T=—,      C=listed
//	                                                C differs from the listing
//	reconcile-gone   Reconcile            —         N <= start, C is the version     C=—
//	                                                the listing lacked
//	forget-deleted   Reconcile            —         N <= start, nothing left         the marker goes
//	replay           ReplayTombstones     L(id)     T still names what was deleted   T=—
//
// Uploads and cold deletes of one segment are serialised by L(id), so the
// bucket's object under an id changes only while its lock is held (the
// writer lease keeps other hosts out). Reconcile passes run one at a time:
// a pass forgets the deleted markers older than its start, which a pass
// begun earlier still needs. Listings (Store.List) read each batch of ids
// from both tiers in one transaction, so a segment that moves between the
// tiers is listed once. Hot-tier changes never wait for it;
// they are ordered against the cold steps by N. Hence a version deleted,
// renamed away or overwritten while it uploads is never indexed, a delete
// never reverts a segment to an older version, a replay never deletes an
// object this store wrote after its tombstone, an upload cut short never
// leaves an object that a delete would not look for, and a listing never
// undoes a change made after it began.
//
// One limit: a tombstone of any version ("") deletes whatever the bucket
// holds when it is replayed. It is left when a delete could not learn the
// object's version: S3 down, or an rm while the segment's upload holds
// L(id) (deleteDeferred; S3 up). The upload's end normally replaces it:
// committed, by the version uploaded, deleted at once; fenced after its
// PUT was answered, by that version. Only when the fence (or an error)
// cuts the PUT before its reply, so that whether it landed is unknown, does
// the tombstone stay "any". If the writer lease then passes to another
// host and back, and that host writes the same id meanwhile, the replay
// deletes that host's object (TestReviewAnyVersionTombstoneAfterHandover).
//
// # The fence
//
// Only the holder of the bucket's writer lease may change the cold tier.
// The mount's lease keeper tells the store with Fence (lost, or about to
// expire unrenewed), AllowColdUntil (renewed: valid until a deadline by
// Config.Now) and Unfence. Every change to the cold tier (archive-start
// and the upload, write-through, delete, rename's delete, replay, the
// delete of an upload's garbage) checks the fence when it starts, again
// before an archive commits (archive-complete: a fenced upload leaves H
// and U as they are) and before each delete is sent; the request itself
// is sent with a context that Fence cancels, so nothing in flight goes on
// after it. Past the deadline the store refuses changes even if Fence
// never comes.
//
// # Lock order
//
// A lock may be taken while holding those above it, never those below:
//
//	reconciler.pass              one reconcile pass at a time; never held with L(id)
//	Store.locks: L(id)           one segment's cold lock; a goroutine holds at most one
//	archiver.making              (a singleflight, not a lock: it calls archive, which takes L)
//	reader follow.Mutex          segments opened in order (prefetch of the next ones)
//	fetcher.learning             (a singleflight, not a lock: one whole read per version
//	                             to learn its block sums; called with no lock held)
//	fetcher.mu                   blocks in flight
//	Index / Hot transactions     bbolt's writer lock, then local.Backend.mu (pins, usage)
//	cache.Blocks.mu              a leaf
//	coldGate.mu                  the fence; a leaf (the lease keeper calls in holding its own mutex)
//
// No lock is held across a call into the cold tier except L(id), whose
// purpose is to be held across the upload or delete it guards.
package tier
