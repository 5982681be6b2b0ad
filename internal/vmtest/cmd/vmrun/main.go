// Command vmrun boots one bofh lab guest and runs a command inside it,
// streaming its output and exiting with its exit status (125 when the lab
// itself failed).
//
// Usage:
//
//	go run ./internal/vmtest/cmd/vmrun [flags] [--] command [args...]
//	go run ./internal/vmtest/cmd/vmrun -i /bin/bash -i   # interactive shell
//	go run ./internal/vmtest/cmd/vmrun -prepare          # fill the cache only
//
// Flags:
//
//	-share HOST[:GUEST][:ro]  extra 9p share (repeatable; rw by default)
//	-dir DIR                  working directory in the guest
//	-env KEY=VALUE            extra environment (repeatable)
//	-i                        interactive: the guest console on this terminal
//	-timeout D                bound on the whole run (default 10m)
//	-accel kvm|tcg            force an accelerator (default: KVM, else TCG)
//	-mem MiB                  guest memory
//
// The host's environment does not reach the guest, except BOFH_FULL_MATRIX
// (make test-full), which is forwarded when set and not given with -env.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bofhkit/bofh/internal/vmtest"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var shares, env multi
	flag.Var(&shares, "share", "HOST[:GUEST][:ro] extra 9p share (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE for the command (repeatable)")
	dir := flag.String("dir", "/", "working directory in the guest")
	interactive := flag.Bool("i", false, "interactive: guest console on this terminal")
	prepare := flag.Bool("prepare", false, "only download the kernel and build the initramfs")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on the whole run")
	accel := flag.String("accel", "", "kvm or tcg (default: KVM, falling back to TCG)")
	mem := flag.Int("mem", 0, "guest memory in MiB")
	quiet := flag.Bool("q", false, "do not print the lab's progress lines")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *prepare {
		start := time.Now()
		lab, err := vmtest.Prepare(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmrun:", err)
			os.Exit(125)
		}
		fmt.Printf("kernel %s\ninitramfs %s\nready in %.1fs\n", lab.Kernel, lab.Initramfs, time.Since(start).Seconds())
		return
	}
	env = forwardEnv(env, os.Getenv)
	cfg := vmtest.Config{
		Dir:         *dir,
		Env:         env,
		Interactive: *interactive,
		Timeout:     *timeout,
		Accel:       *accel,
		MemoryMiB:   *mem,
		Log:         os.Stderr,
	}
	if *quiet {
		cfg.Log = nil
	}
	if *interactive {
		cfg.Timeout = 24 * time.Hour
		fmt.Fprintln(os.Stderr, "vmrun: interactive guest; exit the shell (or Ctrl-A X) to stop it")
	}
	for _, s := range shares {
		sh, err := parseShare(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vmrun:", err)
			os.Exit(2)
		}
		cfg.Shares = append(cfg.Shares, sh)
	}
	rc, err := vmtest.Run(ctx, cfg, flag.Args()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmrun:", err)
		os.Exit(125)
	}
	os.Exit(rc)
}

// forwarded are the host's environment variables passed to the guest's
// command when set (and not given with -env).
var forwarded = []string{vmtest.FullMatrixEnv}

// forwardEnv adds the forwarded variables set on the host to env.
func forwardEnv(env []string, getenv func(string) string) []string {
	for _, k := range forwarded {
		v := getenv(k)
		if v == "" || hasKey(env, k) {
			continue
		}
		env = append(env, k+"="+v)
	}
	return env
}

func hasKey(env []string, k string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, k+"=") {
			return true
		}
	}
	return false
}

func parseShare(s string) (vmtest.Share, error) {
	parts := strings.Split(s, ":")
	sh := vmtest.Share{HostPath: parts[0]}
	rest := parts[1:]
	if n := len(rest); n > 0 && rest[n-1] == "ro" {
		sh.ReadOnly = true
		rest = rest[:n-1]
	}
	switch len(rest) {
	case 0:
	case 1:
		sh.GuestPath = rest[0]
	default:
		return sh, fmt.Errorf("bad -share %q: want HOST[:GUEST][:ro]", s)
	}
	return sh, nil
}
