package hosttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RsyncDaemon starts a real rsync daemon on 127.0.0.1 (a free port)
// serving dir as the read-only module "store" (use chroot = no, uid and
// gid root, numeric ids), waits until its port accepts connections, and
// returns the module's URL (rsync://127.0.0.1:PORT/store) and a stop
// function. The daemon is stopped at cleanup too; stop may be called
// any number of times. It fails the test unless root (BOFH_SKIP_ROOT=1
// skips) or when the daemon does not start.
func RsyncDaemon(t testing.TB, dir string) (url string, stop func()) {
	t.Helper()
	return rsyncDaemon(t, dir, "", "")
}

// RsyncDaemonAuth is RsyncDaemon with the module open to user alone,
// authenticated with password (rsync's "auth users" and a 0600 "secrets
// file", strict modes).
func RsyncDaemonAuth(t testing.TB, dir, user, password string) (url string, stop func()) {
	t.Helper()
	if user == "" || password == "" {
		t.Fatal("RsyncDaemonAuth: empty user or password")
	}
	return rsyncDaemon(t, dir, user, password)
}

func rsyncDaemon(t testing.TB, dir, user, password string) (url string, stop func()) {
	t.Helper()
	RequireRoot(t)
	tmp := t.TempDir()
	conf := filepath.Join(tmp, "rsyncd.conf")
	logFile := filepath.Join(tmp, "rsyncd.log")
	body := fmt.Sprintf("log file = %s\nuse chroot = no\nuid = root\ngid = root\nnumeric ids = yes\n\n[store]\npath = %s\nread only = yes\n", logFile, dir)
	if user != "" {
		secrets := filepath.Join(tmp, "rsyncd.secrets")
		if err := os.WriteFile(secrets, []byte(user+":"+password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		body += fmt.Sprintf("auth users = %s\nsecrets file = %s\nstrict modes = yes\n", user, secrets)
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken in between
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("rsync", "--daemon", "--no-detach", "--address=127.0.0.1",
			"--port="+strconv.Itoa(port), "--config="+conf)
		out, err := os.Create(filepath.Join(tmp, "rsyncd.out"))
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if stop, lastErr = serve(t, cmd, out, addr); lastErr == nil {
			return fmt.Sprintf("rsync://%s/store", addr), stop
		}
	}
	b, _ := os.ReadFile(filepath.Join(tmp, "rsyncd.out"))
	l, _ := os.ReadFile(logFile)
	t.Fatalf("rsync daemon did not start: %v\n%s%s", lastErr, b, l)
	return "", nil
}

// serve starts cmd with StartDaemon (its output to out, which it
// closes), waits until addr accepts connections and returns a stop
// function (kill its process group and reap; it may be called any number
// of times), also run at cleanup. A daemon that exits or does not listen
// is stopped and the error returned, so that the caller may try another
// port; a daemon that cannot start fails t.
func serve(t testing.TB, cmd *exec.Cmd, out *os.File, addr string) (func(), error) {
	t.Helper()
	cmd.Stdout, cmd.Stderr = out, out
	if err := StartDaemon(cmd); err != nil {
		out.Close()
		t.Fatalf("hosttest: start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			// the daemon and the children it forked for connections
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		})
	}
	if err := waitListen(addr, exited); err != nil {
		stop()
		return nil, err
	}
	t.Cleanup(stop)
	return stop, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListen waits up to 10 s until addr accepts a connection, or the
// process behind it exits.
func waitListen(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("daemon exited")
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: not listening after 10s", addr)
}
