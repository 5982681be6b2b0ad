package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
)

func init() {
	atomic.Register(atomic.Def[Write, writeUndo, WriteResult]{
		Doc:     "write a regular file atomically; undo restores the previous content, owner, mode and mtime, or removes it",
		Prepare: prepareWrite,
		Do:      doWrite,
		Undo:    undoWrite,
		Check:   checkWrite,
		Cleanup: cleanupWrite,
	})
	atomic.Register(atomic.Def[Remove, removeUndo, struct{}]{
		Doc:     "remove a file or symlink; undo puts it back with its owner, mode and mtime",
		Prepare: prepareRemove,
		Do:      doRemove,
		Undo:    undoRemove,
		Check:   checkRemove,
	})
	atomic.Register(atomic.Def[Symlink, linkUndo, struct{}]{
		Doc:     "create a symlink; undo removes it",
		Prepare: prepareSymlink,
		Do:      doSymlink,
		Undo:    undoSymlink,
		Check:   checkSymlink,
	})
	atomic.Register(atomic.Def[Dir, dirUndo, struct{}]{
		Doc:     "create a directory (and missing parents with parents: true); undo removes the directories it created, if empty",
		Prepare: prepareDir,
		Do:      doDir,
		Undo:    undoDir,
		Check:   checkDir,
	})
}

// Write is the file.write step: put Content at Path.
type Write struct {
	Path string `json:"path" doc:"absolute path of the file"`
	// Content is the file's content as text; ContentBase64 as base64.
	// Exactly one may be set (neither means an empty file).
	Content       string `json:"content,omitempty" doc:"content as text"`
	ContentBase64 string `json:"content_base64,omitempty" doc:"content as base64 (binary files)"`
	Mode          Mode   `json:"mode,omitempty" doc:"octal mode, default 0644 (or the existing file's)"`
	UID           *int   `json:"uid,omitempty" doc:"owner uid (default: existing owner, or the caller)"`
	GID           *int   `json:"gid,omitempty" doc:"group gid"`
}

// StepKind names the kind.
func (Write) StepKind() string { return "file.write" }

// Validate checks the parameters without touching the system.
func (w Write) Validate() error {
	if err := checkPath(w.Path); err != nil {
		return err
	}
	if w.Content != "" && w.ContentBase64 != "" {
		return errors.New("set content or content_base64, not both")
	}
	if _, err := w.data(); err != nil {
		return err
	}
	_, err := w.Mode.Perm(0o644)
	return err
}

func (w Write) data() ([]byte, error) {
	if w.ContentBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(w.ContentBase64)
		if err != nil {
			return nil, fmt.Errorf("content_base64: %w", err)
		}
		return b, nil
	}
	return []byte(w.Content), nil
}

// WriteResult is what file.write reports.
type WriteResult struct {
	Path   string `json:"path"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

type writeUndo struct {
	Existed bool      `json:"existed"`
	Backup  string    `json:"backup,omitempty"`
	Meta    *Meta     `json:"meta,omitempty"`
	Inode   *inode    `json:"inode,omitempty"`  // the file Prepare saw
	Handle  *handle   `json:"handle,omitempty"` // its handle, when it has other links
	Parent  *dirTimes `json:"parent"`
}

func (w Write) target(old *Meta) (Meta, error) {
	perm, err := w.Mode.Perm(0o644)
	if err != nil {
		return Meta{}, err
	}
	m := Meta{Mode: perm, UID: os.Getuid(), GID: os.Getgid()}
	if old != nil {
		m.UID, m.GID = old.UID, old.GID
		if w.Mode == "" {
			m.Mode = old.Mode
		}
	}
	if w.UID != nil {
		m.UID = *w.UID
	}
	if w.GID != nil {
		m.GID = *w.GID
	}
	return m, nil
}

func result(path string, data []byte) WriteResult {
	sum := sha256.Sum256(data)
	return WriteResult{Path: path, Size: len(data), SHA256: hex.EncodeToString(sum[:])}
}

func prepareWrite(_ context.Context, env *atomic.Env, w Write) (atomic.Plan[writeUndo, WriteResult], error) {
	var plan atomic.Plan[writeUndo, WriteResult]
	data, _ := w.data()
	parent, err := parentTimes(env, w.Path)
	if err != nil {
		return plan, err
	}
	plan.Undo.Parent = parent
	fi, ok, err := exists(w.Path)
	if err != nil || !ok {
		return plan, err
	}
	if !fi.Mode().IsRegular() {
		return plan, fmt.Errorf("%w: %s exists and is not a regular file (%s)", atomic.ErrInvalid, w.Path, fi.Mode().Type())
	}
	m := metaOf(fi)
	want, _ := w.target(&m)
	if want.Mode == m.Mode && want.UID == m.UID && want.GID == m.GID {
		if cur, err := os.ReadFile(w.Path); err == nil && bytes.Equal(cur, data) {
			plan.Noop, plan.Result = true, result(w.Path, data)
			return plan, nil
		}
	}
	plan.Undo.Existed, plan.Undo.Meta, plan.Undo.Inode = true, &m, inodeOf(fi)
	plan.Undo.Handle = handleOf(w.Path, fi)
	plan.Undo.Backup = "backup" // relative to the step's data dir
	return plan, nil
}

func doWrite(_ context.Context, env *atomic.Env, w Write, u writeUndo) (WriteResult, error) {
	data, _ := w.data()
	want, err := w.target(u.Meta)
	if err != nil {
		return WriteResult{}, err
	}
	if env.Dry("write %s (%d bytes, mode %04o)", w.Path, len(data), want.Mode) {
		return result(w.Path, data), nil
	}
	if u.Existed {
		if err := plainName(u.Backup); err != nil {
			return WriteResult{}, err
		}
		dir, err := env.StepDir()
		if err != nil {
			return WriteResult{}, err
		}
		bk := filepath.Join(dir, u.Backup)
		if _, done, err := exists(bk); err != nil {
			return WriteResult{}, err
		} else if !done { // an earlier attempt may already hold the original
			if err := keepOriginal(w.Path, bk, *u.Meta, u.Inode); err != nil {
				return WriteResult{}, fmt.Errorf("back up %s: %w", w.Path, err)
			}
		}
	}
	d, err := openDir(filepath.Dir(w.Path))
	if err != nil {
		return WriteResult{}, fmt.Errorf("write %s: %w", w.Path, err)
	}
	defer d.close()
	name, err := d.writeTemp(tempTag(env.TxID, env.Step), data, want, false)
	if err != nil {
		return WriteResult{}, fmt.Errorf("write %s: %w", w.Path, err)
	}
	if err := d.replace(name, filepath.Base(w.Path)); err != nil {
		d.remove(name)
		return WriteResult{}, err
	}
	return result(w.Path, data), nil
}

// plainName checks that undo data names a file inside the step's own
// directory: a journal is read back from disk, and a name like
// "../../../payload" must never reach a path join.
func plainName(name string) error {
	if name == "" || name == "." || name == ".." || filepath.Base(name) != name {
		return fmt.Errorf("%w: undo data names %q, not a file in the step's directory", atomic.ErrInvalid, name)
	}
	return nil
}

func specialBits(m uint32) os.FileMode {
	var fm os.FileMode
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

func undoWrite(_ context.Context, env *atomic.Env, w Write, u writeUndo, r WriteResult) error {
	// A Do that was cut short may have left its temporary beside the target.
	if d, err := openDir(filepath.Dir(w.Path)); err == nil {
		err := d.removeTemps(tempTag(env.TxID, env.Step))
		d.close()
		if err != nil {
			return err
		}
	}
	if u.Existed {
		if err := plainName(u.Backup); err != nil {
			return err
		}
		dir, err := env.StepDir()
		if err != nil {
			return err
		}
		bk := filepath.Join(dir, u.Backup)
		if _, ok, err := exists(bk); err != nil {
			return err
		} else if !ok {
			if fi, here, _ := exists(w.Path); here && u.Inode != nil && *inodeOf(fi) == *u.Inode {
				return u.Parent.restore() // the original is back (an undo that was cut short)
			}
			if r.Path != "" {
				// The step acted (done record, or Check found its content):
				// the backup must exist. Saying "rolled back" here would
				// leave the new content in place.
				return fmt.Errorf("cannot restore %s: its backup %s is missing", w.Path, bk)
			}
			return u.Parent.restore() // Do never got as far as the backup
		}
		if err := restoreOriginal(bk, w.Path, tempTag(env.TxID, env.Step), *u.Meta, u.Handle, u.Inode); err != nil {
			return fmt.Errorf("restore %s: %w", w.Path, err)
		}
	} else {
		fi, ok, err := exists(w.Path)
		if err != nil {
			return err
		}
		if ok {
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("%s is no longer a regular file; not removing it", w.Path)
			}
			if err := os.Remove(w.Path); err != nil {
				return fmt.Errorf("remove %s: %w", w.Path, err)
			}
		}
	}
	return u.Parent.restore()
}

// cleanupWrite removes the temporaries of a write that was cut short
// before its rename, and gives the parent back the times the temporary's
// creation and removal changed.
func cleanupWrite(_ context.Context, env *atomic.Env, w Write, u writeUndo) error {
	d, err := openDir(filepath.Dir(w.Path))
	if err != nil {
		return nil // no parent: nothing was started there
	}
	defer d.close()
	if err := d.removeTemps(tempTag(env.TxID, env.Step)); err != nil {
		return err
	}
	return u.Parent.restore()
}

func checkWrite(_ context.Context, _ *atomic.Env, w Write, u writeUndo) (bool, WriteResult, error) {
	data, _ := w.data()
	cur, err := os.ReadFile(w.Path)
	if errors.Is(err, os.ErrNotExist) {
		return false, WriteResult{}, nil
	}
	if err != nil {
		return false, WriteResult{}, fmt.Errorf("read %s: %w", w.Path, err)
	}
	if !bytes.Equal(cur, data) {
		return false, WriteResult{}, nil
	}
	return true, result(w.Path, data), nil
}

// Remove is the file.remove step: remove the file or symlink at Path.
type Remove struct {
	Path string `json:"path" doc:"absolute path of a file or symlink (not a directory)"`
}

// StepKind names the kind.
func (Remove) StepKind() string { return "file.remove" }

// Validate checks the parameters.
func (r Remove) Validate() error { return checkPath(r.Path) }

type removeUndo struct {
	Link   string    `json:"link,omitempty"` // symlink target, if a symlink
	IsLink bool      `json:"is_link,omitempty"`
	Meta   Meta      `json:"meta"`
	Inode  *inode    `json:"inode,omitempty"`  // the file Prepare saw
	Handle *handle   `json:"handle,omitempty"` // its handle, when it has other links
	Parent *dirTimes `json:"parent"`
}

func prepareRemove(_ context.Context, _ *atomic.Env, r Remove) (atomic.Plan[removeUndo, struct{}], error) {
	var plan atomic.Plan[removeUndo, struct{}]
	fi, ok, err := exists(r.Path)
	if err != nil {
		return plan, err
	}
	if !ok {
		plan.Noop = true
		return plan, nil
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		t, err := os.Readlink(r.Path)
		if err != nil {
			return plan, fmt.Errorf("readlink %s: %w", r.Path, err)
		}
		plan.Undo.IsLink, plan.Undo.Link = true, t
	case fi.Mode().IsRegular():
		plan.Undo.Inode, plan.Undo.Handle = inodeOf(fi), handleOf(r.Path, fi)
	default:
		return plan, fmt.Errorf("%w: %s is a %s; file.remove removes files and symlinks only", atomic.ErrInvalid, r.Path, fi.Mode().Type())
	}
	plan.Undo.Meta = metaOf(fi)
	if plan.Undo.Parent, err = timesOf(filepath.Dir(r.Path)); err != nil {
		return plan, err
	}
	return plan, nil
}

func doRemove(_ context.Context, env *atomic.Env, r Remove, u removeUndo) (struct{}, error) {
	if env.Dry("remove %s", r.Path) {
		return struct{}{}, nil
	}
	if !u.IsLink {
		dir, err := env.StepDir()
		if err != nil {
			return struct{}{}, err
		}
		if err := keepOriginal(r.Path, filepath.Join(dir, "backup"), u.Meta, u.Inode); err != nil {
			return struct{}{}, fmt.Errorf("back up %s: %w", r.Path, err)
		}
	}
	if err := os.Remove(r.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return struct{}{}, fmt.Errorf("remove %s: %w", r.Path, err)
	}
	return struct{}{}, fsutil.SyncDir(filepath.Dir(r.Path))
}

func undoRemove(_ context.Context, env *atomic.Env, r Remove, u removeUndo, _ struct{}) error {
	if _, ok, err := exists(r.Path); err != nil {
		return err
	} else if ok {
		return u.Parent.restore() // never removed, or already put back
	}
	if u.IsLink {
		if err := os.Symlink(u.Link, r.Path); err != nil {
			return fmt.Errorf("restore symlink %s: %w", r.Path, err)
		}
		if err := applyMeta(r.Path, u.Meta, true); err != nil {
			return err
		}
	} else {
		dir, err := env.StepDir()
		if err != nil {
			return err
		}
		bk := filepath.Join(dir, "backup")
		if _, ok, err := exists(bk); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("%s is gone and its backup %s is missing", r.Path, bk)
		}
		if err := restoreOriginal(bk, r.Path, tempTag(env.TxID, env.Step), u.Meta, u.Handle, u.Inode); err != nil {
			return fmt.Errorf("restore %s: %w", r.Path, err)
		}
	}
	return u.Parent.restore()
}

func checkRemove(_ context.Context, _ *atomic.Env, r Remove, _ removeUndo) (bool, struct{}, error) {
	_, ok, err := exists(r.Path)
	return !ok, struct{}{}, err
}

// Symlink is the symlink.create step: a symlink at Path pointing to Target.
type Symlink struct {
	Path   string `json:"path" doc:"absolute path of the new symlink"`
	Target string `json:"target" doc:"what the symlink points to (kept verbatim)"`
}

// StepKind names the kind.
func (Symlink) StepKind() string { return "symlink.create" }

// Validate checks the parameters.
func (s Symlink) Validate() error {
	if err := checkPath(s.Path); err != nil {
		return err
	}
	if s.Target == "" {
		return errors.New("target is required")
	}
	return nil
}

type linkUndo struct {
	Parent *dirTimes `json:"parent"`
}

func prepareSymlink(_ context.Context, env *atomic.Env, s Symlink) (atomic.Plan[linkUndo, struct{}], error) {
	var plan atomic.Plan[linkUndo, struct{}]
	fi, ok, err := exists(s.Path)
	if err != nil {
		return plan, err
	}
	if ok {
		if fi.Mode()&os.ModeSymlink != 0 {
			if t, _ := os.Readlink(s.Path); t == s.Target {
				plan.Noop = true
				return plan, nil
			}
		}
		return plan, fmt.Errorf("%w: %s already exists", atomic.ErrInvalid, s.Path)
	}
	plan.Undo.Parent, err = parentTimes(env, s.Path)
	return plan, err
}

func doSymlink(_ context.Context, env *atomic.Env, s Symlink, _ linkUndo) (struct{}, error) {
	if env.Dry("link %s -> %s", s.Path, s.Target) {
		return struct{}{}, nil
	}
	if err := os.Symlink(s.Target, s.Path); err != nil {
		return struct{}{}, fmt.Errorf("symlink %s: %w", s.Path, err)
	}
	return struct{}{}, fsutil.SyncDir(filepath.Dir(s.Path))
}

func undoSymlink(_ context.Context, _ *atomic.Env, s Symlink, u linkUndo, _ struct{}) error {
	fi, ok, err := exists(s.Path)
	if err != nil {
		return err
	}
	if ok {
		t, _ := os.Readlink(s.Path)
		if fi.Mode()&os.ModeSymlink == 0 || t != s.Target {
			return fmt.Errorf("%s is no longer our symlink; not removing it", s.Path)
		}
		if err := os.Remove(s.Path); err != nil {
			return fmt.Errorf("remove %s: %w", s.Path, err)
		}
	}
	return u.Parent.restore()
}

func checkSymlink(_ context.Context, _ *atomic.Env, s Symlink, _ linkUndo) (bool, struct{}, error) {
	fi, ok, err := exists(s.Path)
	if err != nil || !ok || fi.Mode()&os.ModeSymlink == 0 {
		return false, struct{}{}, err
	}
	t, err := os.Readlink(s.Path)
	return err == nil && t == s.Target, struct{}{}, nil
}

// Dir is the dir.create step.
type Dir struct {
	Path    string `json:"path" doc:"absolute path of the directory"`
	Mode    Mode   `json:"mode,omitempty" doc:"octal mode, default 0755"`
	Parents bool   `json:"parents,omitempty" doc:"create missing parent directories too"`
	UID     *int   `json:"uid,omitempty" doc:"owner uid"`
	GID     *int   `json:"gid,omitempty" doc:"group gid"`
}

// StepKind names the kind.
func (Dir) StepKind() string { return "dir.create" }

// Validate checks the parameters.
func (d Dir) Validate() error {
	if err := checkPath(d.Path); err != nil {
		return err
	}
	_, err := d.Mode.Perm(0o755)
	return err
}

type dirUndo struct {
	Created []string  `json:"created"` // outermost first
	Parent  *dirTimes `json:"parent"`  // the deepest directory that existed
}

func prepareDir(_ context.Context, env *atomic.Env, d Dir) (atomic.Plan[dirUndo, struct{}], error) {
	var plan atomic.Plan[dirUndo, struct{}]
	var missing []string
	p := d.Path
	for {
		fi, ok, err := exists(p)
		if err != nil {
			return plan, err
		}
		if ok {
			if !fi.IsDir() {
				return plan, fmt.Errorf("%w: %s exists and is not a directory", atomic.ErrInvalid, p)
			}
			break
		}
		missing = append([]string{p}, missing...)
		p = filepath.Dir(p)
	}
	if len(missing) == 0 {
		plan.Noop = true
		return plan, nil
	}
	if len(missing) > 1 && !d.Parents && !env.DryRun {
		return plan, fmt.Errorf("%w: parent %s does not exist (set parents: true to create it)", atomic.ErrInvalid, filepath.Dir(d.Path))
	}
	var err error
	plan.Undo.Created = missing
	plan.Undo.Parent, err = timesOf(p)
	return plan, err
}

func doDir(_ context.Context, env *atomic.Env, d Dir, u dirUndo) (struct{}, error) {
	perm, _ := d.Mode.Perm(0o755)
	if env.Dry("create directory %s (mode %04o)", d.Path, perm) {
		return struct{}{}, nil
	}
	for _, p := range u.Created {
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return struct{}{}, fmt.Errorf("mkdir %s: %w", p, err)
		}
		uid, gid := os.Getuid(), os.Getgid()
		if d.UID != nil {
			uid = *d.UID
		}
		if d.GID != nil {
			gid = *d.GID
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return struct{}{}, fmt.Errorf("chown %s: %w", p, err)
		}
		if err := os.Chmod(p, os.FileMode(perm&0o777)|specialBits(perm)); err != nil {
			return struct{}{}, fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	return struct{}{}, fsutil.SyncDir(filepath.Dir(u.Created[0]))
}

func undoDir(_ context.Context, _ *atomic.Env, d Dir, u dirUndo, _ struct{}) error {
	for i := len(u.Created) - 1; i >= 0; i-- {
		if err := os.Remove(u.Created[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove directory %s (it is not empty: bofh removes only what it created): %w", u.Created[i], err)
		}
	}
	return u.Parent.restore()
}

func checkDir(_ context.Context, _ *atomic.Env, d Dir, u dirUndo) (bool, struct{}, error) {
	fi, ok, err := exists(d.Path)
	return ok && fi.IsDir(), struct{}{}, err
}
