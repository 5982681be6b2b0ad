package main

import (
	"context"
	"fmt"
	"os"

	"github.com/bofhkit/bofh/internal/vmtest"
)

func main() {
	rc, err := vmtest.Run(context.Background(), vmtest.Config{Log: os.Stderr}, os.Args[1:]...)
	fmt.Println("rc", rc, "err", err)
}
