package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		p    atomic.Params
		want string
	}{
		{Write{Path: "rel"}, "not absolute"},
		{Write{Path: "/a/../b"}, "not clean"},
		{Write{Path: "/"}, "root directory"},
		{Write{Path: "/x\x00y"}, "NUL"},
		{Write{Path: "/x", Content: "a", ContentBase64: "YQ=="}, "not both"},
		{Write{Path: "/x", ContentBase64: "!!"}, "content_base64"},
		{Write{Path: "/x", Mode: "0999"}, "octal"},
		{Dir{Path: "/x", Mode: "rwx"}, "octal"},
		{Symlink{Path: "/x"}, "target is required"},
		{Remove{Path: ""}, "path is required"},
		{Write{Path: "/x", Mode: "4755"}, ""},
	}
	for _, tc := range tests {
		err := tc.p.(atomic.Validator).Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%#v: %v, want %q", tc.p, err, tc.want)
		}
	}
}

func run(t *testing.T, fail string, steps ...atomic.Params) error {
	t.Helper()
	return atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
		for _, s := range steps {
			if err := tx.Do(context.Background(), s, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(fail))
}

func TestConflictsAndNoops(t *testing.T) {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "same"), []byte("x"), 0o644)
	os.Chmod(filepath.Join(d, "same"), 0o644)
	os.Mkdir(filepath.Join(d, "dir"), 0o755)
	os.Symlink("t", filepath.Join(d, "ln"))
	tests := []struct {
		name string
		step atomic.Params
		want string // "" = success
	}{
		{"write over a directory", Write{Path: filepath.Join(d, "dir")}, "not a regular file"},
		{"write through a symlink", Write{Path: filepath.Join(d, "ln")}, "not a regular file"},
		{"remove a directory", Remove{Path: filepath.Join(d, "dir")}, "files and symlinks only"},
		{"symlink over a file", Symlink{Path: filepath.Join(d, "same"), Target: "x"}, "already exists"},
		{"dir over a file", Dir{Path: filepath.Join(d, "same")}, "not a directory"},
		{"dir without parents", Dir{Path: filepath.Join(d, "a", "b")}, "parents: true"},
		{"same content is a noop", Write{Path: filepath.Join(d, "same"), Content: "x"}, ""},
		{"existing symlink is a noop", Symlink{Path: filepath.Join(d, "ln"), Target: "t"}, ""},
		{"existing dir is a noop", Dir{Path: filepath.Join(d, "dir")}, ""},
		{"removing what is absent is a noop", Remove{Path: filepath.Join(d, "absent")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t, "", tc.step)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
		})
	}
	// a noop is not undone: a later failure leaves the pre-existing file
	if err := run(t, "2:after:error", Write{Path: filepath.Join(d, "same"), Content: "x"}, Write{Path: filepath.Join(d, "new")}); err == nil {
		t.Fatal("want failure")
	}
	if b, err := os.ReadFile(filepath.Join(d, "same")); err != nil || string(b) != "x" {
		t.Fatalf("noop step was undone: %q %v", b, err)
	}
}

func TestUndoDirRefusesToRemoveForeignContent(t *testing.T) {
	d := t.TempDir()
	state := t.TempDir()
	target := filepath.Join(d, "new")
	tx, err := atomic.Begin(context.Background(), "t", atomic.WithStateDir(state))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Do(context.Background(), Dir{Path: target}, nil); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(target, "someone-elses"), []byte("data"), 0o644)
	err = tx.Rollback(context.Background())
	if !errors.Is(err, atomic.ErrRollbackIncomplete) || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("rollback: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "someone-elses")); err != nil {
		t.Fatal("undo destroyed data it did not create")
	}
}

func TestBinaryContentAndSpecialBits(t *testing.T) {
	d := t.TempDir()
	p := filepath.Join(d, "bin")
	if err := run(t, "", Write{Path: p, ContentBase64: "AAEC/w==", Mode: "2750"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "\x00\x01\x02\xff" || fi.Mode()&os.ModeSetgid == 0 || fi.Mode().Perm() != 0o750 {
		t.Fatalf("content %q mode %v", b, fi.Mode())
	}
}
