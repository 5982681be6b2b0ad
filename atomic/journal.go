package atomic

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/internal/fsutil"
)

// Record types written to a journal.
const (
	recBegin          = "begin"           // transaction opened
	recIntent         = "intent"          // a step is about to act; holds params and undo
	recDone           = "done"            // the step acted; holds its result
	recFail           = "fail"            // a step failed; the transaction will roll back
	recCommitStart    = "commit"          // reversible steps done; deferred steps run now
	recRun            = "run"             // a deferred (irreversible) step is about to act
	recNotRun         = "not-run"         // a deferred step failed and Check says it took no effect
	recCommitted      = "committed"       // terminal: the transaction took effect
	recRollback       = "rollback"        // a rollback started
	recUndone         = "undone"          // a step's effect was undone
	recUndoFailed     = "undo-failed"     // a step's undo failed
	recSkip           = "skip"            // the operator handled a step by hand
	recRolledBack     = "rolled-back"     // terminal: every step undone
	recRollbackFailed = "rollback-failed" // terminal until re-run: an undo failed
)

// Record is one line of a journal.
type Record struct {
	Seq  int       `json:"seq"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`

	// begin
	TxID   string          `json:"tx,omitempty"`
	Name   string          `json:"name,omitempty"`
	PID    int             `json:"pid,omitempty"`
	Recipe json.RawMessage `json:"recipe,omitempty"`

	// step records
	Step     int             `json:"step,omitempty"`
	Kind     string          `json:"kind,omitempty"`
	ID       string          `json:"id,omitempty"`
	Params   json.RawMessage `json:"params,omitempty"`
	Undo     json.RawMessage `json:"undo,omitempty"`
	Noop     bool            `json:"noop,omitempty"`
	Deferred bool            `json:"deferred,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// frame is the on-disk line: the record's exact bytes and their CRC-32C.
type frame struct {
	CRC uint32          `json:"crc"`
	Rec json.RawMessage `json:"rec"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned when a journal line other than the last fails its
// CRC or does not parse: the journal cannot be trusted past that point.
var ErrCorrupt = errors.New("journal corrupt")

// ErrLocked is returned when a transaction is held by a live process.
var ErrLocked = errors.New("transaction is held by a running process")

// encodeRecord renders r as one journal line, newline included.
func encodeRecord(r *Record) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode journal record: %w", err)
	}
	var b bytes.Buffer
	b.Grow(len(body) + 32)
	b.WriteString(`{"crc":`)
	b.WriteString(strconv.FormatUint(uint64(crc32.Checksum(body, castagnoli)), 10))
	b.WriteString(`,"rec":`)
	b.Write(body)
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// decodeLine parses one line (without its newline).
func decodeLine(line []byte) (*Record, error) {
	var f frame
	if err := json.Unmarshal(line, &f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if f.Rec == nil {
		return nil, errors.New("no record")
	}
	if got := crc32.Checksum(f.Rec, castagnoli); got != f.CRC {
		return nil, fmt.Errorf("crc mismatch: stored %08x, computed %08x", f.CRC, got)
	}
	var r Record
	if err := json.Unmarshal(f.Rec, &r); err != nil {
		return nil, fmt.Errorf("parse record: %w", err)
	}
	return &r, nil
}

// ReadJournal decodes a journal stream. A torn last line — one without its
// newline, which is the last byte a record's single write puts down — is
// dropped and reported through torn; the valid prefix length in bytes is
// returned so a writer can truncate there. A complete line that is bad
// (CRC, JSON, sequence), last or not, is corruption, never a torn write:
// ReadJournal returns the records before it and an error wrapping
// ErrCorrupt, so its step is never silently forgotten.
func ReadJournal(rd io.Reader) (recs []*Record, validLen int64, torn bool, err error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	lineNo := 0
	var pendingErr error
	for {
		line, rerr := br.ReadBytes('\n')
		if len(line) == 0 && rerr == io.EOF {
			break
		}
		lineNo++
		if pendingErr != nil {
			// a bad line was followed by another: not a torn tail
			return recs, validLen, false, pendingErr
		}
		complete := rerr == nil
		if !complete && rerr != io.EOF {
			return recs, validLen, false, fmt.Errorf("read journal: %w", rerr)
		}
		body := bytes.TrimSuffix(line, []byte("\n"))
		rec, derr := decodeLine(body)
		if derr == nil && complete && rec.Seq != len(recs)+1 {
			derr = fmt.Errorf("sequence %d, want %d", rec.Seq, len(recs)+1)
		}
		if derr != nil || !complete {
			if !complete {
				return recs, validLen, true, nil
			}
			pendingErr = fmt.Errorf("%w: line %d: %v", ErrCorrupt, lineNo, derr)
			continue
		}
		recs = append(recs, rec)
		validLen += int64(len(line))
	}
	if pendingErr != nil {
		// The bad line was the last one, but complete: a torn write cannot
		// end in its newline.
		return recs, validLen, false, pendingErr
	}
	return recs, validLen, false, nil
}

// journal is an open, locked transaction journal.
type journal struct {
	f    *os.File
	path string
	seq  int
	sync bool
	// reserved is how far the file's blocks are allocated.
	reserved int64
}

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidID reports whether id can name a transaction (and a file).
func ValidID(id string) error {
	if !idRe.MatchString(id) {
		return fmt.Errorf("%w: transaction ID %q: use letters, digits, '.', '_' and '-' (at most 128)", ErrInvalid, id)
	}
	return nil
}

func journalDir(stateDir string) string { return filepath.Join(stateDir, "journal") }

func journalPath(stateDir, id string) string {
	return filepath.Join(journalDir(stateDir), id+".jsonl")
}

// dataDir is where steps of a transaction keep backups.
func dataDir(stateDir, id string) string { return filepath.Join(stateDir, "data", id) }

// createJournal creates and locks a new journal file. The file is made
// unnamed (O_TMPFILE), locked, and only then linked under its name, so a
// reader never sees a journal that exists but is not yet held. The state
// directory and journal/ are created 0700 if missing, checked if not
// (owner, mode, no symlink), and never chmod'ed.
func createJournal(stateDir, id string) (*journal, error) {
	jd, err := openJournalDir(stateDir, true)
	if err != nil {
		return nil, err
	}
	defer jd.close()
	name := id + ".jsonl"
	p := filepath.Join(jd.path, name)
	f, err := createLinked(jd, name)
	if err != nil {
		return nil, err
	}
	if err := jd.sync(); err != nil {
		f.Close()
		return nil, err
	}
	return &journal{f: f, path: p, sync: true}, nil
}

// createLinked makes name in d as a new, locked, empty 0600 file.
func createLinked(d *pinned, name string) (*os.File, error) {
	p := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_APPEND|unix.O_CLOEXEC, 0o600)
	if err != nil {
		// A file system without O_TMPFILE: create it in place (a reader
		// may briefly see it unlocked and empty).
		fd, err = unix.Openat(d.fd, name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create journal %s: %w", p, err)
		}
		f := os.NewFile(uintptr(fd), p)
		if err := lockFile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock journal %s: %w", name, ErrLocked)
		}
		return f, nil
	}
	f := os.NewFile(uintptr(fd), p)
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock journal %s: %w", name, err)
	}
	err = unix.Linkat(fd, "", d.fd, name, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EPERM) { // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH
		err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), d.fd, name, unix.AT_SYMLINK_FOLLOW)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create journal %s: %w", p, err)
	}
	return f, nil
}

// openJournal opens and locks an existing journal for appending, returning
// its records. A torn tail is truncated away — only after the file was
// opened without following a symlink and checked to be bofh's own regular
// journal.
func openJournal(stateDir, id string) (*journal, []*Record, error) {
	jd, err := openJournalDir(stateDir, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("transaction %s: %w", id, ErrNotFound)
		}
		return nil, nil, err
	}
	defer jd.close()
	f, err := jd.openFile(id+".jsonl", unix.O_RDWR)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("transaction %s: %w", id, ErrNotFound)
		}
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	p := f.Name()
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("transaction %s: %w", id, ErrLocked)
	}
	recs, valid, torn, err := ReadJournal(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("transaction %s: %w", id, err)
	}
	if torn {
		if err := f.Truncate(valid); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("truncate torn journal tail: %w", err)
		}
	}
	if _, err := f.Seek(valid, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("seek journal: %w", err)
	}
	return &journal{f: f, path: p, seq: len(recs), sync: true}, recs, nil
}

// append writes r durably, filling in its sequence number and time.
func (j *journal) append(r *Record) error {
	j.seq++
	r.Seq = j.seq
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	line, err := encodeRecord(r)
	if err != nil {
		j.seq--
		return err
	}
	fi, err := j.f.Stat()
	if err != nil {
		j.seq--
		return fmt.Errorf("stat journal: %w", err)
	}
	if r.Type == recIntent {
		// Room for this step's undo record, and every earlier one's, and
		// the end: a rollback must never find the disk full.
		if err := j.reserve(fi.Size() + int64(len(line)) + int64(r.Step+2)*reservePerStep); err != nil {
			j.seq--
			return err
		}
	}
	if _, err := j.f.Write(line); err != nil {
		j.seq--
		// A short write (disk full) is cut back off, so the journal ends
		// on a whole record and the next append is readable.
		_ = j.f.Truncate(fi.Size())
		return fmt.Errorf("write journal: %w", err)
	}
	// A done record is not synced on its own: it rides on the next
	// record's fdatasync — the next step's intent, which is synced before
	// that step acts, or the terminal record. Lost in a power cut, it
	// leaves its step uncertain, which Check (or an idempotent undo)
	// resolves, exactly as a crash between an effect and its done record
	// always could. One fdatasync per step instead of two.
	if j.sync && r.Type != recDone {
		if err := fsutil.IgnoringEINTR(func() error { return unix.Fdatasync(int(j.f.Fd())) }); err != nil {
			return fmt.Errorf("fdatasync journal: %w", err)
		}
	}
	return nil
}

// reservePerStep is the room kept in a journal file for each step's undo
// record (undone, or undo-failed with its error).
const reservePerStep = 2048

// reserve makes sure the journal file's blocks up to size are allocated
// (fallocate, keeping the file's size), so later records up to there
// cannot fail for lack of space. File systems without fallocate are
// left as they are.
func (j *journal) reserve(size int64) error {
	if size <= j.reserved {
		return nil
	}
	want := size + 16*reservePerStep // grow in steps, not per record
	err := fsutil.IgnoringEINTR(func() error { return unix.Fallocate(int(j.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, want) })
	switch {
	case err == nil:
		j.reserved = want
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		j.reserved = 1 << 62
	default:
		return fmt.Errorf("reserve room in the journal for the rollback: %w", err)
	}
	return nil
}

// remove deletes the journal file (one that never got its begin record)
// and closes it.
func (j *journal) remove() {
	if j == nil || j.f == nil {
		return
	}
	dir, name := filepath.Dir(j.path), filepath.Base(j.path)
	if d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
		_ = unix.Unlinkat(d, name, 0)
		_ = unix.Fsync(d)
		unix.Close(d)
	}
	j.close()
}

func (j *journal) close() error {
	if j == nil || j.f == nil {
		return nil
	}
	err := j.f.Close() // releases the lock
	j.f = nil
	return err
}
