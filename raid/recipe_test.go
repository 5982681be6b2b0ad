package raid_test

import (
	"os"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	_ "github.com/bofhkit/bofh/blockdev" // loop.attach, fs.mkfs, mount for the stacked recipe
	_ "github.com/bofhkit/bofh/raid"
)

// TestRecipeValidates checks the example recipe parses and validates
// (kinds, parameters, ${id.field} references) without running anything.
func TestRecipeValidates(t *testing.T) {
	data, err := os.ReadFile("../recipes/raid/raid1-ext4.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := atomic.ParseRecipe(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}
