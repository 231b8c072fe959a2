// Package integration tests scribefs end to end: the real binary, a real
// MinIO server and real FUSE mounts, driven by real tools (ls, cat, cp, dd,
// rsync, tar) from this test process while a separate scribefs process
// serves the mount.
//
// Under CI=true a missing MinIO binary or /dev/fuse fails the tests; on a
// developer machine they are skipped with the reason.
package integration
