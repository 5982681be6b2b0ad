package hosttest

import (
	"context"
	"fmt"
	"os"

	"github.com/bofhkit/bofh/atomic"
)

// ApplyChild is the child half of a crash test: call it first in
// TestMain. When env is set to "apply", the test binary is a child that
// applies the recipe in $BOFH_HELPER_RECIPE with the state dir
// $BOFH_HELPER_STATE (a BOFH_FAIL kill failpoint SIGKILLs it mid-way),
// prints the transaction ID and exits with atomic.ExitCode. Otherwise it
// returns and the tests run.
func ApplyChild(env string) {
	if os.Getenv(env) != "apply" {
		return
	}
	r, err := atomic.ParseRecipe([]byte(os.Getenv("BOFH_HELPER_RECIPE")))
	if err == nil {
		var id string
		id, err = atomic.Apply(context.Background(), r, atomic.WithStateDir(os.Getenv("BOFH_HELPER_STATE")))
		fmt.Println(id)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(atomic.ExitCode(err))
	}
	os.Exit(0)
}
