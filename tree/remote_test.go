package tree

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/run"
)

func TestRemoteURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		spec   string
		remote bool
		canon  string // "" when invalid
		source string // source("install/v1/web/")
	}{
		{"/srv/trees", false, "", ""},
		{"rsync://host/store", true, "rsync://host/store", "rsync://host/store/install/v1/web/"},
		{"rsync://host/store/", true, "rsync://host/store", "rsync://host/store/install/v1/web/"},
		{"rsync://127.0.0.1:8730/store/sub/dir", true, "rsync://127.0.0.1:8730/store/sub/dir", "rsync://127.0.0.1:8730/store/sub/dir/install/v1/web/"},
		{"rsync://bob@mirror.example.org/trees", true, "rsync://bob@mirror.example.org/trees", "rsync://bob@mirror.example.org/trees/install/v1/web/"},
		{"rsync://[::1]:873/store", true, "rsync://[::1]:873/store", "rsync://[::1]:873/store/install/v1/web/"},
		{"host::store", true, "host::store", "host::store/install/v1/web/"},
		{"bob@host::store/a/", true, "bob@host::store/a", "bob@host::store/a/install/v1/web/"},
		{"host:/srv/trees", true, "host:/srv/trees", "host:/srv/trees/install/v1/web/"},
		{"root@host:/srv/trees/", true, "root@host:/srv/trees", "root@host:/srv/trees/install/v1/web/"},
		{"host:/", true, "host:/", "host:/install/v1/web/"},
		{"[fe80::1]:/srv", true, "[fe80::1]:/srv", "[fe80::1]:/srv/install/v1/web/"},
		// invalid
		{"-e sh:/x", true, "", ""},
		{"-oProxyCommand=x:/srv", true, "", ""},
		{"host:relative", true, "", ""},
		{"host:", true, "", ""},
		{"host::", true, "", ""},
		{"rsync://host", true, "", ""},
		{"rsync://host/", true, "", ""},
		{"rsync://bob:secret@host/store", true, "", ""},
		{"bob:secret@host::store", true, "", ""},
		{"bob:secret@host:/srv", true, "", ""},
		{"rsync://bob:secret@host/st ore", true, "", ""},
		{"bob:secret@host:/srv/\xff", true, "", ""},
		{"rsync://host:0/store", true, "", ""},
		{"rsync://host:65536/store", true, "", ""},
		{"rsync://host:08/store", true, "", ""},
		{"rsync://host:x/store", true, "", ""},
		{"rsync://host/store/../etc", true, "", ""},
		{"rsync://host/store/./x", true, "", ""},
		{"rsync://host/store//x", true, "", ""},
		{"rsync://host/store/v*", true, "", ""},
		{"rsync://host/st*re", true, "", ""},
		{"host:/srv/../etc", true, "", ""},
		{"host:/srv/a b", true, "", ""},
		{"host:/srv/a\nb", true, "", ""},
		{"host:/srv/a\x00b", true, "", ""},
		{"host:/srv/a\x7fb", true, "", ""},
		{"host:/srv/\xff", true, "", ""},
		{"ho st:/srv", true, "", ""},
		{"-host:/srv", true, "", ""},
		{"host-:/srv", true, "", ""},
		{".host:/srv", true, "", ""},
		{"@host:/srv", true, "", ""},
		{"-bob@host:/srv", true, "", ""},
		{"a@b@host:/srv", true, "", ""},
		{"rsync://[1.2.3.4]/store", true, "", ""},
		{"rsync://[zz::1]/store", true, "", ""},
		{"rsync://host/-store", true, "", ""},
		{"rsync://host/.store", true, "", ""},
		{"rsync://host/store\u2028x", true, "", ""},
	}
	for _, c := range cases {
		if got := IsRemote(c.spec); got != c.remote {
			t.Errorf("IsRemote(%q) = %v, want %v", c.spec, got, c.remote)
		}
		if !c.remote {
			continue
		}
		m, err := OpenMirror(c.spec, t.TempDir(), nil)
		if c.canon == "" {
			if !errors.Is(err, atomic.ErrInvalid) || atomic.ExitCode(err) != atomic.ExitInvalid {
				t.Errorf("OpenMirror(%q) = %v, want ErrInvalid", c.spec, err)
			} else if strings.Contains(err.Error(), "secret") {
				t.Errorf("OpenMirror(%q): the error shows the password: %v", c.spec, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("OpenMirror(%q): %v", c.spec, err)
			continue
		}
		if m.URL != c.canon {
			t.Errorf("OpenMirror(%q).URL = %q, want %q", c.spec, m.URL, c.canon)
		}
		if s := m.rm.source("install/v1/web/"); s != c.source {
			t.Errorf("source of %q = %q, want %q", c.spec, s, c.source)
		}
	}
}

// FuzzRemoteURL: parsing never panics, and an accepted spec never starts
// with '-', holds no whitespace or control character, and its canonical
// form parses back to itself.
func FuzzRemoteURL(f *testing.F) {
	for _, s := range []string{"rsync://h/m", "rsync://u@h:873/m/p", "h::m/p", "u@h:/p", "[::1]:/x", "rsync://[::1]/m", "/srv", "-x:/y", "h:/a/../b", "rsync://u:p@h/m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = IsRemote(s)
		rm, err := parseRemote(s)
		if err != nil {
			if !errors.Is(err, atomic.ErrInvalid) {
				t.Fatalf("%q: error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		c := rm.String()
		for _, x := range []string{s, c, rm.source("install/v/r/")} {
			if strings.HasPrefix(x, "-") {
				t.Fatalf("%q accepted: %q starts with '-'", s, x)
			}
			for _, r := range x {
				if unicode.IsControl(r) || unicode.IsSpace(r) {
					t.Fatalf("%q accepted: %q holds %U", s, x, r)
				}
			}
		}
		if !IsRemote(s) {
			t.Fatalf("%q accepted but IsRemote is false", s)
		}
		if strings.Contains(rm.user, ":") {
			t.Fatalf("%q accepted with a password", s)
		}
		back, err := parseRemote(c)
		if err != nil || back.String() != c {
			t.Fatalf("%q: canonical %q does not parse back: %v", s, c, err)
		}
	})
}

func TestMirrorDir(t *testing.T) {
	t.Parallel()
	state := filepath.Join(t.TempDir(), "state")
	m, err := OpenMirror("rsync://host/store/", state, nil)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("rsync://host/store"))
	want := filepath.Join(state, "tree-stores", hex.EncodeToString(sum[:])[:16])
	if m.Dir != want || m.Root() != filepath.Join(want, "store") {
		t.Fatalf("mirror dir %s root %s, want %s", m.Dir, m.Root(), want)
	}
	for _, p := range []string{filepath.Join(state, "tree-stores"), m.Dir} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want 0700", p, fi.Mode(), err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(m.Dir, "url")); err != nil || string(b) != "rsync://host/store\n" {
		t.Errorf("url file %q %v", b, err)
	}
	// the same store spelled with a trailing slash shares the mirror
	m2, err := OpenMirror("rsync://host/store", state, nil)
	if err != nil || m2.Dir != m.Dir {
		t.Fatalf("second open: %v %v", m2, err)
	}
	// a symlinked mirror dir is refused
	evil := "rsync://host/other"
	sum = sha256.Sum256([]byte(evil))
	os.Symlink(t.TempDir(), filepath.Join(state, "tree-stores", hex.EncodeToString(sum[:])[:16]))
	if _, err := OpenMirror(evil, state, nil); err == nil {
		t.Fatal("a symlinked mirror dir was accepted")
	}
}

// captured reads a testdata/rsync file: its exit code and stderr.
func captured(t *testing.T, name string) (int, string) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "rsync", name+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := -1
	var stderr []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "# exit ") {
			code, _ = strconv.Atoi(strings.TrimPrefix(l, "# exit "))
		}
		if !strings.HasPrefix(l, "# ") {
			stderr = append(stderr, l)
		}
	}
	if code < 0 {
		t.Fatalf("%s: no '# exit N' line", name)
	}
	return code, strings.Join(stderr, "\n") + "\n"
}

// TestRemoteTranscript checks the exact rsync command lines of Index and
// Fetch for the three forms, and the classification of the messages
// captured from rsync 3.5.0.
func TestRemoteTranscript(t *testing.T) {
	t.Parallel()
	daemonOpts := []string{"rsync", "-a", "-H", "-A", "-X", "--numeric-ids", "--delete", "--modify-window=-1", "--timeout=600", "--contimeout=60", "--no-motd"}
	sshOpts := []string{"rsync", "-a", "-H", "-A", "-X", "--numeric-ids", "--delete", "--modify-window=-1", "--timeout=600", "-s"}
	cat := func(xs ...[]string) []string {
		var o []string
		for _, x := range xs {
			o = append(o, x...)
		}
		return o
	}
	for _, c := range []struct {
		spec, src string
		opts      []string
	}{
		{"rsync://127.0.0.1:8730/store", "rsync://127.0.0.1:8730/store/", daemonOpts},
		{"host::store/sub", "host::store/sub/", daemonOpts},
		{"bob@host:/srv/trees", "bob@host:/srv/trees/", sshOpts},
	} {
		t.Run(c.spec, func(t *testing.T) {
			f := run.NewFake(t)
			m, err := OpenMirror(c.spec, t.TempDir(), f)
			if err != nil {
				t.Fatal(err)
			}
			dst := m.Root() + "/"
			f.Expect(cat(c.opts, indexFilter, []string{"--", c.src, dst})...).Kind(run.Query)
			f.Expect(cat(c.opts, []string{"--", c.src + "install/v 1/web/", dst + "install/v 1/web/"})...).Kind(run.Query)
			if err := m.Index(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := m.Fetch(context.Background(), "v 1", "web"); err != nil {
				t.Fatal(err)
			}
			f.Done()
			for _, call := range f.Calls() {
				if len(call.Env) != 1 || call.Env[0] != "RSYNC_OLD_ARGS=0" {
					t.Errorf("env %q", call.Env)
				}
			}
		})
	}
	t.Run("glob in a name", func(t *testing.T) {
		f := run.NewFake(t)
		m, _ := OpenMirror("host::store", t.TempDir(), f)
		for _, v := range []string{"v*", "v?", "v[1]", `v\1`, "../x", ""} {
			if err := m.Fetch(context.Background(), v, "web"); !errors.Is(err, atomic.ErrInvalid) {
				t.Errorf("Fetch(%q): %v", v, err)
			}
		}
		f.Done()
	})
	// ssh: the captures are of rsync over ssh (root@127.0.0.1:/path)
	for _, c := range []struct {
		file    string
		ssh     bool
		fetch   bool
		is      []error
		notIs   []error
		message string
	}{
		{"missing-tree", false, true, []error{ErrNoVersion, atomic.ErrInvalid}, []error{ErrUnreachable}, "v9/web at "},
		{"missing-path", false, false, []error{atomic.ErrInvalid}, []error{ErrNoVersion, ErrUnreachable}, `change_dir "nodir"`},
		{"unknown-module", false, false, []error{atomic.ErrInvalid}, []error{ErrUnreachable}, "Unknown module 'nope'"},
		{"connection-refused", false, false, []error{ErrUnreachable}, []error{atomic.ErrInvalid}, "Connection refused"},
		{"unknown-host", false, false, []error{ErrUnreachable}, []error{atomic.ErrInvalid}, "nohost.invalid 873: Name or service not known"},
		{"auth-failed", false, false, nil, []error{atomic.ErrInvalid, ErrUnreachable}, "authentication failed"},
		{"ssh-unknown-host", true, false, []error{ErrUnreachable}, []error{atomic.ErrInvalid}, "Could not resolve hostname"},
		{"ssh-missing-tree", true, true, []error{ErrNoVersion, atomic.ErrInvalid}, []error{ErrUnreachable}, "v9/web at "},
		{"ssh-missing-path", true, false, []error{atomic.ErrInvalid}, []error{ErrNoVersion, ErrUnreachable}, `change_dir "/tmp/rx/nodir" failed: No such file or directory`},
		{"ssh-connection-refused", true, false, []error{ErrUnreachable}, []error{atomic.ErrInvalid}, "ssh: connect to host 127.0.0.1 port 36245: Connection refused"},
		{"ssh-permission-denied", true, false, []error{ErrUnreachable}, []error{atomic.ErrInvalid}, "root@127.0.0.1: Permission denied (publickey)"},
	} {
		t.Run(c.file, func(t *testing.T) {
			code, stderr := captured(t, c.file)
			f := run.NewFake(t)
			spec, opts := "rsync://127.0.0.1:8730/store", daemonOpts
			if c.ssh {
				spec, opts = "root@127.0.0.1:/tmp/rx/srv/trees", sshOpts
			}
			m, err := OpenMirror(spec, t.TempDir(), f)
			if err != nil {
				t.Fatal(err)
			}
			var argv []string
			if c.fetch {
				argv = cat(opts, []string{"--", spec + "/install/v9/web/", m.Root() + "/install/v9/web/"})
			} else {
				argv = cat(opts, indexFilter, []string{"--", spec + "/", m.Root() + "/"})
			}
			f.Expect(argv...).Fail(code, stderr)
			if c.fetch {
				err = m.Fetch(context.Background(), "v9", "web")
			} else {
				err = m.Index(context.Background())
			}
			f.Done()
			if err == nil {
				t.Fatal("no error")
			}
			for _, k := range c.is {
				if !errors.Is(err, k) {
					t.Errorf("%v: not %v", err, k)
				}
			}
			for _, k := range c.notIs {
				if errors.Is(err, k) {
					t.Errorf("%v: is %v", err, k)
				}
			}
			var re *run.Error
			if !errors.As(err, &re) {
				t.Errorf("%v: the *run.Error is not reachable", err)
			}
			if !strings.Contains(err.Error(), c.message) || !strings.Contains(err.Error(), spec) {
				t.Errorf("message %q lacks %q or the URL", err, c.message)
			}
			// the follow-on messages of the other side's exit are dropped
			for _, noise := range []string{"Broken pipe", "connection unexpectedly closed"} {
				if strings.Contains(err.Error(), noise) {
					t.Errorf("message %q shows %q", err, noise)
				}
			}
			if c.fetch {
				if _, err := os.Lstat(filepath.Join(m.Root(), "install", "v9")); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a failed fetch left install/v9 in the mirror: %v", err)
				}
			}
		})
	}
}

// remoteLab is a store served on loopback by a real rsync daemon
// (newRemoteLab) or a real sshd (newSSHLab); url names it remotely and
// stop stops the server.
type remoteLab struct {
	mnt, store, marker, url string
	stop                    func()
}

// newStoreLab builds the store on a fresh filesystem of type fstype ("" for
// a temporary directory); the caller serves it.
func newStoreLab(t *testing.T, fstype string) *remoteLab {
	t.Helper()
	requireRoot(t)
	var mnt string
	if fstype == "" {
		mnt = t.TempDir()
	} else {
		mnt = newFS(t, fstype, 512<<20)
	}
	l := &remoteLab{mnt: mnt, marker: filepath.Join(t.TempDir(), "hooks")}
	l.store = makeStore(t, mnt, l.marker)
	return l
}

func newRemoteLab(t *testing.T, fstype string) *remoteLab {
	t.Helper()
	l := newStoreLab(t, fstype)
	l.url, l.stop = hosttest.RsyncDaemon(t, l.store)
	return l
}

// newSSHLab serves the store over ssh as root@127.0.0.1:<store>: a real
// sshd on loopback, reached with the operator's way of passing ssh
// options, RSYNC_RSH, set for the test (so the test may not be parallel).
func newSSHLab(t *testing.T, fstype string) *remoteLab {
	t.Helper()
	l := newStoreLab(t, fstype)
	s := hosttest.Sshd(t)
	t.Setenv("RSYNC_RSH", s.RSH())
	l.url, l.stop = "root@127.0.0.1:"+l.store, s.Stop
	return l
}

func namedTarget(t *testing.T, mnt, fstype, name string) string {
	t.Helper()
	p := filepath.Join(mnt, name)
	if fstype == "btrfs" {
		sh(t, "btrfs", "subvolume", "create", p)
	} else if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// withoutState drops the state file and the mtime of etc/ (the state
// file is written when the deploy runs, so it differs between targets).
func withoutState(m map[string]string) map[string]string {
	o := map[string]string{}
	for k, v := range m {
		if k == StateFile {
			continue
		}
		if k == "etc" {
			v = v[:strings.Index(v, " mtime=")]
		}
		o[k] = v
	}
	return o
}

// TestHostRemoteDeployUpgrade deploys v1 and upgrades to v2 one target
// from the local store and one from the same store served by rsync on
// loopback, on btrfs and ext4: the mirrored trees and the targets are
// the same, owners, modes, xattrs, ACLs, hard links, symlinks and odd
// names included.
func TestHostRemoteDeployUpgrade(t *testing.T) {
	for _, fstype := range []string{"btrfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) {
			remoteDeployUpgrade(t, newRemoteLab(t, fstype), fstype)
		})
	}
}

// remoteDeployUpgrade deploys v1 and upgrades to v2 one target from the
// lab's local store and one from l.url, and compares mirrors and targets.
func remoteDeployUpgrade(t *testing.T, l *remoteLab, fstype string) {
	t.Helper()
	ctx := context.Background()
	state := filepath.Join(l.mnt, "state")
	local := namedTarget(t, l.mnt, fstype, "local")
	remote := namedTarget(t, l.mnt, fstype, "remote")
	r := &run.Local{}

	dir, err := LocalStore(ctx, r, l.url, state, [2]string{"v1", "web"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dir, filepath.Join(state, "tree-stores")+"/") {
		t.Fatalf("mirror %s is not under the state dir", dir)
	}
	sameFingerprint(t, "mirrored v1", fingerprint(t, filepath.Join(l.store, "install/v1/web")), fingerprint(t, filepath.Join(dir, "install/v1/web")))
	sameFingerprint(t, "mirrored metadata", fingerprint(t, filepath.Join(l.store, "metadata")), fingerprint(t, filepath.Join(dir, "metadata")))
	if _, err := Deploy(ctx, Request{Store: dir, Role: "web", Version: "v1", Target: remote, StateDir: state}); err != nil {
		t.Fatal(err)
	}
	if _, err := Deploy(ctx, Request{Store: l.store, Role: "web", Version: "v1", Target: local, StateDir: state}); err != nil {
		t.Fatal(err)
	}
	sameFingerprint(t, "deployed from the remote store", withoutState(fingerprint(t, local)), withoutState(fingerprint(t, remote)))
	if rep, err := Verify(dir, remote); err != nil || len(rep.Changes) != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}

	st, _ := ReadState(remote)
	dir2, err := LocalStore(ctx, r, l.url, state, [2]string{"v2", st.Role})
	if err != nil || dir2 != dir {
		t.Fatalf("second LocalStore: %s %v", dir2, err)
	}
	sameFingerprint(t, "mirrored v2", fingerprint(t, filepath.Join(l.store, "install/v2/web")), fingerprint(t, filepath.Join(dir, "install/v2/web")))
	sameFingerprint(t, "v1 kept by the index refresh", fingerprint(t, filepath.Join(l.store, "install/v1/web")), fingerprint(t, filepath.Join(dir, "install/v1/web")))
	for _, tgt := range []struct{ store, target string }{{dir, remote}, {l.store, local}} {
		req := Request{Store: tgt.store, Version: "v2", Target: tgt.target, StateDir: state, HookTimeout: 20e9}
		if out, err := Upgrade(ctx, req); err != nil || !out.RebootNeeded {
			t.Fatalf("upgrade %s: %+v %v", tgt.target, out, err)
		}
	}
	if b, _ := os.ReadFile(l.marker); string(b) != "pre v1 v2\npost\npre v1 v2\npost\n" {
		t.Errorf("the mirrored hooks wrote %q", b)
	}
	sameFingerprint(t, "upgraded from the remote store", withoutState(fingerprint(t, local)), withoutState(fingerprint(t, remote)))
	if rep, err := Verify(dir, remote); err != nil || len(rep.Changes) != 0 {
		t.Fatalf("verify after the upgrade: %+v %v", rep, err)
	}
}

// TestHostRemoteSSH: the same deploy and upgrade from a store reached
// with rsync over ssh (root@127.0.0.1:/path, a real sshd on loopback, ssh
// options from RSYNC_RSH), then a missing version and a stopped sshd are
// clear errors that change neither the target nor the mirrored trees.
func TestHostRemoteSSH(t *testing.T) {
	l := newSSHLab(t, "ext4")
	remoteDeployUpgrade(t, l, "ext4")

	ctx := context.Background()
	state := filepath.Join(l.mnt, "state")
	target := filepath.Join(l.mnt, "remote")
	r := &run.Local{}
	dir, err := LocalStore(ctx, r, l.url, state)
	if err != nil {
		t.Fatal(err)
	}
	// the mirrored trees and metadata (the mtime of the mirror's install/
	// changes when a failed fetch removes the install/v9 it created: the
	// next index refresh restores it)
	mirror := func() map[string]string {
		m := map[string]string{}
		for _, sub := range []string{"metadata", "install/v1", "install/v2"} {
			for k, v := range fingerprint(t, filepath.Join(dir, sub)) {
				m[sub+"/"+k] = v
			}
		}
		return m
	}
	before, mirrored := fingerprint(t, target), mirror()

	t.Run("missing version", func(t *testing.T) {
		_, err := LocalStore(ctx, r, l.url, state, [2]string{"v9", "web"})
		if !errors.Is(err, ErrNoVersion) || atomic.ExitCode(err) != atomic.ExitInvalid || errors.Is(err, ErrUnreachable) ||
			!strings.Contains(err.Error(), l.url) {
			t.Fatalf("err = %v", err)
		}
		sameFingerprint(t, "target after a missing version", before, fingerprint(t, target))
		sameFingerprint(t, "mirror after a missing version", mirrored, mirror())
		if _, err := os.Lstat(filepath.Join(dir, "install/v9")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed fetch left install/v9 in the mirror: %v", err)
		}
	})
	t.Run("sshd down", func(t *testing.T) {
		l.stop()
		_, err := LocalStore(ctx, r, l.url, state, [2]string{"v2", "web"})
		if !errors.Is(err, ErrUnreachable) || errors.Is(err, atomic.ErrInvalid) || !strings.Contains(err.Error(), l.url) ||
			!strings.Contains(err.Error(), "Connection refused") {
			t.Fatalf("err = %v", err)
		}
		sameFingerprint(t, "target after sshd went down", before, fingerprint(t, target))
		sameFingerprint(t, "mirror after sshd went down", mirrored, mirror())
	})
}

// TestHostRemoteVerifyListErrors: verify against a remote store detects
// drift, list works from the index, a missing version and a stopped
// daemon are clear errors that change nothing.
func TestHostRemoteVerifyListErrors(t *testing.T) {
	l := newRemoteLab(t, "ext4")
	ctx := context.Background()
	state := filepath.Join(l.mnt, "state")
	target := namedTarget(t, l.mnt, "ext4", "target")
	r := &run.Local{}
	dir, err := LocalStore(ctx, r, l.url, state, [2]string{"v1", "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Deploy(ctx, Request{Store: dir, Role: "web", Version: "v1", Target: target, StateDir: state}); err != nil {
		t.Fatal(err)
	}
	before := fingerprint(t, target)

	t.Run("list", func(t *testing.T) {
		dir, err := LocalStore(ctx, r, l.url, state)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := List(dir, "web", "")
		if err != nil || strings.Join(ls.Versions, ",") != "v1,v2" || strings.Join(ls.Upgrades["v1"], ",") != "v2" {
			t.Fatalf("list: %+v %v", ls, err)
		}
	})
	t.Run("missing version", func(t *testing.T) {
		_, err := LocalStore(ctx, r, l.url, state, [2]string{"v9", "web"})
		if !errors.Is(err, ErrNoVersion) || atomic.ExitCode(err) != atomic.ExitInvalid || !strings.Contains(err.Error(), l.url) {
			t.Fatalf("err = %v", err)
		}
		sameFingerprint(t, "after a missing version", before, fingerprint(t, target))
	})
	t.Run("drift", func(t *testing.T) {
		st, _ := ReadState(target)
		dir, err := LocalStore(ctx, r, l.url, state, [2]string{st.Version, st.Role})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(target, "etc/motd")
		os.WriteFile(p, []byte("HELLO\n"), 0o644)
		defer os.WriteFile(p, []byte("hello\n"), 0o644)
		rep, err := Verify(dir, target)
		if err != nil || len(rep.Changes) != 1 || rep.Changes[0].Path != "etc/motd" {
			t.Fatalf("verify: %+v %v", rep, err)
		}
	})
	t.Run("daemon down", func(t *testing.T) {
		os.WriteFile(filepath.Join(target, "etc/motd"), []byte("hello\n"), 0o644)
		before := fingerprint(t, target)
		l.stop()
		_, err := LocalStore(ctx, r, l.url, state, [2]string{"v2", "web"})
		if !errors.Is(err, ErrUnreachable) || errors.Is(err, atomic.ErrInvalid) || !strings.Contains(err.Error(), l.url) ||
			!strings.Contains(err.Error(), "Connection refused") {
			t.Fatalf("err = %v", err)
		}
		sameFingerprint(t, "after the daemon went down", before, fingerprint(t, target))
	})
}

// TestHostMirrorIndexKeepsFetched: an index refresh keeps the trees
// fetched before (excluded receiver files are protected from --delete)
// and the mirror's own files, and drops a version removed remotely.
func TestHostMirrorIndexKeepsFetched(t *testing.T) {
	l := newRemoteLab(t, "")
	ctx := context.Background()
	m, err := OpenMirror(l.url, t.TempDir(), &run.Local{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Index(ctx); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(m.Root(), "install/v1/web")); len(ents) != 0 {
		t.Fatalf("the index fetched tree content: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(m.Root(), "metadata/v1/web/v2/pre")); err != nil {
		t.Fatalf("metadata not indexed: %v", err)
	}
	for _, v := range []string{"v1", "v2"} {
		if err := m.Fetch(ctx, v, "web"); err != nil {
			t.Fatal(err)
		}
	}
	want := fingerprint(t, filepath.Join(l.store, "install/v1/web"))
	unlock, err := m.lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	os.RemoveAll(filepath.Join(l.store, "install/v2"))
	write(t, filepath.Join(l.store, "metadata/v1/web/v2/exclude"), "/changed\n", 0o644)
	if err := m.Index(ctx); err != nil {
		t.Fatal(err)
	}
	sameFingerprint(t, "v1 after an index refresh", want, fingerprint(t, filepath.Join(m.Root(), "install/v1/web")))
	if _, err := os.Lstat(filepath.Join(m.Root(), "install/v2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("v2, removed from the remote store, is still mirrored: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(m.Root(), "metadata/v1/web/v2/exclude")); string(b) != "/changed\n" {
		t.Errorf("metadata not refreshed: %q", b)
	}
	for _, f := range []string{"url", "lock"} {
		if _, err := os.Lstat(filepath.Join(m.Dir, f)); err != nil {
			t.Errorf("mirror file %s: %v", f, err)
		}
	}
	if fi, err := os.Stat(m.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("mirror dir mode %v %v", fi.Mode(), err)
	}
}

// argvLog records the command lines a runner runs.
type argvLog struct {
	r    run.Runner
	mu   sync.Mutex
	argv []string
}

func (a *argvLog) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	a.mu.Lock()
	a.argv = append(a.argv, strings.Join(c.Argv, " "))
	a.mu.Unlock()
	return a.r.Run(ctx, c)
}

// TestHostRemoteAuth: a real rsync daemon whose module needs a user and
// password. The password is read from a 0600 password file (given to
// rsync as --password-file, never in argv or errors) or from
// RSYNC_PASSWORD; a wrong one fails clearly naming where it came from;
// a password file readable by others, for an ssh store or for a local
// store is refused before anything is made.
func TestHostRemoteAuth(t *testing.T) {
	const user, secret = "deployer", "pw-Zq81-not-in-argv"
	l := newStoreLab(t, "")
	url, _ := hosttest.RsyncDaemonAuth(t, l.store, user, secret)
	url = strings.Replace(url, "rsync://", "rsync://"+user+"@", 1)
	ctx := context.Background()
	t.Setenv("RSYNC_PASSWORD", "")
	os.Unsetenv("RSYNC_PASSWORD")
	pwFile := func(content string, mode os.FileMode) string {
		p := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	noLeak := func(t *testing.T, log *argvLog, err error) {
		t.Helper()
		for _, a := range log.argv {
			if strings.Contains(a, secret) {
				t.Errorf("the password is in argv: %s", a)
			}
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the password is in the error: %v", err)
		}
	}
	deployFrom := func(t *testing.T, dir, state string) {
		t.Helper()
		target := namedTarget(t, t.TempDir(), "", "target")
		if _, err := Deploy(ctx, Request{Store: dir, Role: "web", Version: "v1", Target: target, StateDir: state}); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(target, "etc/app.conf")); err != nil || string(b) != "conf v1\n" {
			t.Fatalf("deployed app.conf %q %v", b, err)
		}
	}

	t.Run("password file", func(t *testing.T) {
		state := t.TempDir()
		log := &argvLog{r: &run.Local{}}
		pf := pwFile(secret+"\n", 0o600)
		dir, err := LocalStoreWith(ctx, log, url, state, StoreOptions{PasswordFile: pf}, [][2]string{{"v1", "web"}}, nil)
		noLeak(t, log, err)
		if err != nil {
			t.Fatal(err)
		}
		if len(log.argv) == 0 || !strings.Contains(log.argv[0], "--password-file="+pf) {
			t.Errorf("rsync was not given the password file: %q", log.argv)
		}
		deployFrom(t, dir, state)
	})
	t.Run("RSYNC_PASSWORD", func(t *testing.T) {
		t.Setenv("RSYNC_PASSWORD", secret)
		state := t.TempDir()
		log := &argvLog{r: &run.Local{}}
		dir, err := LocalStore(ctx, log, url, state, [2]string{"v1", "web"})
		noLeak(t, log, err)
		if err != nil {
			t.Fatal(err)
		}
		deployFrom(t, dir, state)
	})
	t.Run("wrong password", func(t *testing.T) {
		log := &argvLog{r: &run.Local{}}
		pf := pwFile("not-"+secret+"\n", 0o600)
		_, err := LocalStoreWith(ctx, log, url, t.TempDir(), StoreOptions{PasswordFile: pf}, [][2]string{{"v1", "web"}}, nil)
		noLeak(t, log, err)
		if err == nil || !strings.Contains(err.Error(), "authentication failed") || !strings.Contains(err.Error(), "password file "+pf) || errors.Is(err, atomic.ErrInvalid) {
			t.Fatalf("err = %v", err)
		}
	})
	for _, tc := range []struct {
		name, spec string
		file       func() string
		want       string
	}{
		{"readable by others", url, func() string { return pwFile(secret, 0o644) }, "mode 0644"},
		{"readable by group", url, func() string { return pwFile(secret, 0o640) }, "mode 0640"},
		{"missing", url, func() string { return filepath.Join(t.TempDir(), "nope") }, "no such file"},
		{"relative", url, func() string { return "pw" }, "absolute path"},
		{"directory", url, func() string { return t.TempDir() }, "not a regular file"},
		{"ssh store", "root@127.0.0.1:/srv/trees", func() string { return pwFile(secret, 0o600) }, "not " + "root@127.0.0.1:/srv/trees"},
		{"local store", l.store, func() string { return pwFile(secret, 0o600) }, "local store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			f := run.NewFake(t) // no command may run
			_, err := LocalStoreWith(ctx, f, tc.spec, state, StoreOptions{PasswordFile: tc.file()}, [][2]string{{"v1", "web"}}, nil)
			if !errors.Is(err, atomic.ErrInvalid) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), secret) {
				t.Fatalf("err = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(state); len(ents) != 0 {
				t.Errorf("the state dir was written: %v", ents)
			}
			f.Done()
		})
	}
}
