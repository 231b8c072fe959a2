package control

import (
	"context"

	"github.com/scribefs/scribefs/tier"
)

// Verify's types travel over the socket as they are: the check itself is
// the store's (tier.Store.Verify); this package only carries it.
type (
	VerifyOptions  = tier.VerifyOptions
	Problem        = tier.Problem
	VerifyReport   = tier.VerifyReport
	VerifyProgress = tier.VerifyProgress
)

// Verify runs the store's verify (tier.Store.Verify).
func (l *Local) Verify(ctx context.Context, opts VerifyOptions, progress VerifyProgress) (VerifyReport, error) {
	return l.Store.Verify(ctx, opts, progress)
}
