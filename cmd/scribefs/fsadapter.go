package main

import (
	"context"

	"github.com/scribefs/scribefs/fs"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
)

// fsStore presents a tier.Store as the fs.Store the filesystem needs; the
// two packages do not import each other.
type fsStore struct{ *tier.Store }

func (s fsStore) Open(ctx context.Context, id segment.ID) (fs.Reader, error) {
	r, err := s.Store.Open(ctx, id)
	if err != nil {
		return nil, err
	}
	return r, nil
}

var _ fs.Store = fsStore{}
