// Package fs presents a segment store as a FUSE filesystem (go-fuse v2):
// MOUNTPOINT/segments/<id> is one regular file per segment.
//
// It talks only to the Store interface in store.go and never imports the AWS
// SDK or bbolt; storage errors become errnos in exactly one function.
package fs
