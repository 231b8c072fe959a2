package mem

import (
	"testing"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/backend/backendtest"
	"github.com/scribefs/scribefs/segment"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return New(segment.TierCold) }, backendtest.Options{})
}
