package hosttest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SshdPath is the sshd binary Sshd runs (sshd re-executes itself, so it
// must be an absolute path).
const SshdPath = "/usr/sbin/sshd"

// SSHServer is a real sshd listening on 127.0.0.1, started by Sshd.
type SSHServer struct {
	// Port is its TCP port on 127.0.0.1.
	Port int
	// SSH is the client's argv without the destination: ssh with the
	// test's private key, a known_hosts file holding the server's host
	// key (strict checking), batch mode and no configuration file.
	SSH []string

	stop func()
}

// RSH returns SSH as one command line for RSYNC_RSH (or rsync -e): the
// arguments separated by spaces, each single-quoted as rsync's own
// splitter understands it.
func (s *SSHServer) RSH() string {
	q := make([]string, len(s.SSH))
	for i, a := range s.SSH {
		q[i] = "'" + a + "'"
	}
	return strings.Join(q, " ")
}

// Env returns the environment a client adds to reach the server with
// rsync: RSYNC_RSH=<RSH>.
func (s *SSHServer) Env() []string { return []string{"RSYNC_RSH=" + s.RSH()} }

// Stop stops sshd (connections already open are left to finish). It may
// be called any number of times; it also runs at cleanup.
func (s *SSHServer) Stop() { s.stop() }

// Sshd starts a real sshd (SshdPath -D -e) on 127.0.0.1 and a free port,
// with a fresh ed25519 host key, accepting only a fresh client key for
// any user (root included: PermitRootLogin prohibit-password; no
// passwords, no PAM). It creates the privilege separation directory
// /run/sshd if missing, waits until the port accepts connections and
// stops sshd at cleanup. It fails the test unless root (BOFH_SKIP_ROOT=1
// skips), or when sshd is not installed or does not start.
func Sshd(t testing.TB) *SSHServer {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat(SshdPath); err != nil {
		t.Fatalf("hosttest: sshd: %v (install openssh-server: scripts/deps.sh deps/tree.txt)", err)
	}
	// not t.TempDir: its name comes from the test's and may hold spaces,
	// which neither sshd_config nor RSYNC_RSH take unquoted
	sweep()
	tmp, err := os.MkdirTemp("", ownedName("tmp", "sshd-*"))
	if err != nil {
		t.Fatalf("hosttest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if strings.ContainsAny(tmp, " \t\n'\"\\#") {
		t.Fatalf("hosttest: sshd: temporary directory %q holds a space, quote or '#'", tmp)
	}
	if err := os.Mkdir("/run/sshd", 0o755); err != nil && !os.IsExist(err) {
		t.Fatalf("hosttest: sshd privilege separation directory: %v", err)
	}
	hostKey := filepath.Join(tmp, "ssh_host_ed25519_key")
	clientKey := filepath.Join(tmp, "id_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		if _, err := output("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bofh-hosttest", "-f", k); err != nil {
			t.Fatalf("hosttest: %v", err)
		}
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatalf("hosttest: %v", err)
	}
	clientPub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatalf("hosttest: %v", err)
	}
	authKeys := filepath.Join(tmp, "authorized_keys")
	if err := os.WriteFile(authKeys, clientPub, 0o600); err != nil {
		t.Fatalf("hosttest: %v", err)
	}
	// "ssh-ed25519 AAAA… comment": the known_hosts line drops the comment
	hf := strings.Fields(string(hostPub))
	if len(hf) < 2 {
		t.Fatalf("hosttest: host key %q", hostPub)
	}
	conf := filepath.Join(tmp, "sshd_config")
	known := filepath.Join(tmp, "known_hosts")
	logFile := filepath.Join(tmp, "sshd.log")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken in between
		port, err := freePort()
		if err != nil {
			t.Fatalf("hosttest: %v", err)
		}
		body := strings.Join([]string{
			"ListenAddress 127.0.0.1:" + strconv.Itoa(port),
			"HostKey " + hostKey,
			"PidFile " + filepath.Join(tmp, "sshd.pid"),
			"AuthorizedKeysFile " + authKeys,
			"AuthenticationMethods publickey",
			"PubkeyAuthentication yes",
			"PermitRootLogin prohibit-password",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"UsePAM no",
			// the key files sit below /tmp (1777), which strict modes refuse
			"StrictModes no",
			"PermitUserEnvironment no",
			"AllowTcpForwarding no",
			"AllowAgentForwarding no",
			"X11Forwarding no",
			"PrintMotd no",
			"LogLevel VERBOSE",
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatalf("hosttest: %v", err)
		}
		line := fmt.Sprintf("[127.0.0.1]:%d %s %s\n", port, hf[0], hf[1])
		if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
			t.Fatalf("hosttest: %v", err)
		}
		out, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatalf("hosttest: %v", err)
		}
		cmd := exec.Command(SshdPath, "-D", "-e", "-f", conf)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var stop func()
		if stop, lastErr = serve(t, cmd, out, addr); lastErr == nil {
			return &SSHServer{
				Port: port,
				SSH: []string{"ssh", "-F", "none", "-p", strconv.Itoa(port), "-i", clientKey,
					"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
					"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + known,
					"-o", "GlobalKnownHostsFile=/dev/null", "-o", "UpdateHostKeys=no",
					"-o", "HostKeyAlgorithms=ssh-ed25519", "-o", "ConnectTimeout=10"},
				stop: stop,
			}
		}
	}
	b, _ := os.ReadFile(logFile)
	t.Fatalf("hosttest: sshd did not start: %v\n%s", lastErr, b)
	return nil
}
