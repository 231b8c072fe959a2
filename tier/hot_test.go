package tier_test

import (
	"path/filepath"
	"testing"

	"github.com/scribefs/scribefs/backend/local"
	"github.com/scribefs/scribefs/backend/mem"
	"github.com/scribefs/scribefs/segment"
	"github.com/scribefs/scribefs/tier"
	"github.com/scribefs/scribefs/tier/tiertest"
)

// The two hot tiers the store runs on pass the same hot-tier suite.
func TestHotConformance(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		tiertest.RunHot(t, func(t *testing.T) (tier.Hot, tier.Index) {
			b, err := local.Open(filepath.Join(t.TempDir(), "hot.db"), local.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return b, b.Index()
		})
	})
	t.Run("mem", func(t *testing.T) {
		tiertest.RunHot(t, func(t *testing.T) (tier.Hot, tier.Index) {
			b := mem.New(segment.TierHot)
			return b, b.Index()
		})
	})
}
