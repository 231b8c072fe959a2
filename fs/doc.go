// Package fs presents a segment store as a FUSE file system (go-fuse v2):
// MOUNTPOINT/segments/<id> is one regular file per segment.
//
// It talks only to the Store interface in store.go and never imports the AWS
// SDK or bbolt; storage errors become errnos in exactly one function,
// toErrno.
//
// # Using it
//
//	srv, err := fs.Mount("/mnt/scribe", store, fs.Options{Logger: log})
//	if err != nil { … }
//	go func() { <-sigterm; srv.Shutdown(30 * time.Second) }()
//	srv.Wait()
//
// Mount returns once the kernel has the mount. Shutdown refuses new opens,
// lets files open for writing finish for a grace period, drops what is still
// open after it (never publishing it), and unmounts. Wait returns when the
// file system is gone, whether by Shutdown or by umount from outside.
//
// # The tree
//
//	/               fixed structure: creating anything here fails (EPERM)
//	/segments/      one file per segment, named by its canonical decimal id
//	/segments/.x    names starting with "." are temporary files (rsync's
//	                .name.XXXXXX, editors' swap files): they live in a spool
//	                file until renamed onto an id, and are never stored
//
// Any other name ("abc", "007", "-1", "18446744073709551616") cannot be
// created (EINVAL), so every segment has exactly one name. There are no
// subdirectories, symlinks, hard links, device nodes or fifos (EPERM), and no
// extended attributes (the kernel is told ENOSYS once and stops asking,
// which keeps ls -l fast). chmod and chown are accepted and ignored so that
// rsync -a, tar and cp -p work; files always show 0644.
//
// # The nodes
//
// Following go-fuse, each kind of node is a small struct embedding
// gofs.Inode, and each kernel operation it supports is one method, asserted
// next to it:
//
//	rootDir      root.go       the root; Statfs from Store.Space
//	segmentsDir  segments.go   Lookup (Store.Stat), Create, Unlink
//	                           (Store.Delete), Rename (Store.Rename or Put);
//	             namespace.go  which draft and which inode identity a name has;
//	             publish.go    publishing drafts, truncate, utimes, getattr
//	dirHandle    dirstream.go  an open segments directory: a lazy listing fed
//	                           by Store.List from a goroutine
//	fileNode     file.go       a file: Getattr, Setattr, Open, Read, Write,
//	                           Flush, Fsync, Release
//	draft        draft.go      the staged new contents of a file being written
//	stream       stream.go     a draft being stored while appends continue
//	gatedStore   gate.go       the Store, shut once the mount has ended
//
// Mount, Options and Server (with Server.Delete) are in mount.go; the inode
// numbering in ino.go; toErrno in errno.go; spool files and CleanSpool in
// spool.go.
//
// # Reading
//
// stat, ls -l and find never fetch data: attributes come from Store.Stat and
// Store.List. Open pins the current version (Store.Open) and the handle reads
// that version to its end, even if the segment is overwritten, deleted or
// archived meanwhile. Reopening an unchanged segment keeps the kernel's
// page cache (FOPEN_KEEP_CACHE), so a second cat costs no store reads; a
// new version, size or mtime drops it. The kernel keeps one size and one
// page cache per inode, so a node serves one version at a time: when the
// file changes while pinned readers read a node through the page cache,
// the node is retired (fileNode.retired): it keeps serving them their
// version with its size, and the name gets a new node, hence a new kernel
// inode, at its next lookup; an operation that finds the node retired
// answers ESTALE, on which the kernel looks again and retries. A read-only
// open of a file open for writing shares its draft. So mappings never mix
// versions.
//
// readdirplus describes entries with Store.List's answers, except those
// changed through the mount since the listing began (noteChange), which
// are looked up in full. Directory offsets are cookies derived from the ids
// (see segmentStream), so seekdir survives changes.
//
// # Writing
//
// Writes never go to the store directly and are never held in memory: a file
// opened for writing gets a draft, a spool file under Store.SpoolDir (named
// .scribefs-spool-<digits> and unlinked at once; CleanSpool removes the
// ones a crash left between the two steps, and nothing else). An existing
// segment's bytes are copied into the spool lazily, on the first change (so
// >> and dd conv=notrunc work); O_TRUNC and truncate are staged like
// writes. All handles writing one file share its draft, and reads of a file
// with unpublished changes see the draft (read-your-writes within the
// mount), as does stat. A file may not grow past Store.MaxSegmentBytes: a
// write crossing it is a short write, one starting there fails with
// EFBIG. A failed write (EFBIG, ENOSPC in the spool) fails that write
// only: the draft is unchanged, other writers go on and their closes
// publish; the failed writer's close reports the error and publishes
// nothing. If it was the file's only writer, its draft is detached from
// the name, so later opens start from the stored version; a new file
// whose only writer failed is not stored at all.
//
// Publish points: the draft replaces the segment in one Store.Put at
//
//	FLUSH    close(2) of a descriptor of a handle that changed the
//	         file since the last publish, even if it only created or
//	         emptied it (touch, : > f, O_TRUNC), by a process that
//	         made such a change through that handle, when no other
//	         handle writing the file has unpublished changes; close
//	         returns the Put's error
//	FSYNC    fsync(2) or fdatasync(2) of any descriptor of the file,
//	         whichever descriptor made the changes, even one opened
//	         read-only (sync FILE); fsync returns the Put's error
//	RELEASE  changes made after the last FLUSH (writes through a shared
//	         mapping after close); the kernel reports nothing, so a
//	         failure is only logged, and a publish whose failure close
//	         already reported is not retried
//
// FUSE tells the descriptors of one handle (dup, fork, a redirection)
// apart only by the process closing them, so: a child that inherited the
// descriptor and changed nothing through it publishes nothing when it
// exits ({ printf a; /bin/true; printf b; } > f stores "ab" at the end,
// never "a"), while any close by a process that did change it publishes
// what the file holds so far. And while several handles write one file
// (two dd conv=notrunc), a close publishes nothing until the last of them
// with changes closes, which publishes them all: the store never holds a
// mix that no writer finished.
//
// So once close returns 0 and no other writer of the file is still at
// work, or once fsync returns 0, the change is in the store. A shell
// redirection (cmd > f) closes a duplicate of the descriptor right after
// opening it, which publishes the truncation at once: readers then see
// the file empty until cmd's output is published at its close, and if cmd
// fails the segment stays empty, as on a local disk. A new file created
// that way whose writes then fail is removed again (it was only an empty
// creation), keeping the rule above.
//
// Deleting: unlink of segments/<id> removes the segment from the store and
// detaches a draft bound to the name, so that writers still holding the
// file keep writing into a file without a name and their close stores
// nothing. Server.Delete does the same for deletes from outside the mount
// (the control socket's rm), under the same name lock, and tells the
// kernel to forget the name.
//
// A file written by appends (cp, a download, a ledger writing a segment) is
// streamed into the store once it passes 8 MiB (stream.go): a
// Store.PutStream reads the spool behind the writer, so close only stores
// the last bytes and publishes. The new version is still invisible until
// then, and any other change (a write below the end, a truncation, a
// rename) abandons the stream and close falls back to Store.Put.
//
// # Inode numbers
//
// A segment's inode number is computed from its id, so it is the same after
// a remount: id+3 for every id up to 2^64-5, so no two segments share a
// number unless both are among the top 2^31+4 ids (the four highest fold
// onto the numbers of four ids below them, and temp files take their
// numbers from the top 2^31); see ino.go.
//
// # Caching
//
// The kernel caches lookups and attributes for Options.EntryTimeout and
// AttrTimeout (1 s by default). Changes made through the mount are seen at
// once; changes made to the store by others show within those timeouts.
//
// # What it must not do
//
// Touch storage other than through Store; hold a whole file in memory; block
// the kernel on a notification while it waits for us; publish a version that
// no writer has closed or fsynced; delete a file in the spool directory
// that it did not create.
package fs
