package atomic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func recs(n int) []*Record {
	var out []*Record
	out = append(out, &Record{Seq: 1, Type: recBegin, TxID: "t1", Name: "n"})
	for i := 2; i <= n; i++ {
		out = append(out, &Record{Seq: i, Type: recIntent, Step: i - 1, Kind: "k", Params: json.RawMessage(`{"a":"b\nc"}`)})
	}
	return out
}

func encodeAll(t testing.TB, rs []*Record) []byte {
	var b bytes.Buffer
	for _, r := range rs {
		line, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
	}
	return b.Bytes()
}

func TestJournalRoundTrip(t *testing.T) {
	in := recs(5)
	data := encodeAll(t, in)
	out, valid, torn, err := ReadJournal(bytes.NewReader(data))
	if err != nil || torn {
		t.Fatalf("read: err=%v torn=%v", err, torn)
	}
	if valid != int64(len(data)) || len(out) != len(in) {
		t.Fatalf("got %d records, %d valid bytes; want %d, %d", len(out), valid, len(in), len(data))
	}
	for i := range in {
		a, _ := json.Marshal(in[i])
		b, _ := json.Marshal(out[i])
		if !bytes.Equal(a, b) {
			t.Errorf("record %d: got %s want %s", i, b, a)
		}
	}
}

func TestJournalDamage(t *testing.T) {
	good := encodeAll(t, recs(4))
	lines := bytes.SplitAfter(good, []byte("\n"))
	flip := func(line []byte) []byte { // change a byte inside the record, keep JSON valid
		l := bytes.Clone(line)
		i := bytes.Index(l, []byte(`"kind":"k"`))
		l[i+8] = 'x'
		return l
	}
	tests := []struct {
		name      string
		data      []byte
		wantRecs  int
		wantTorn  bool
		wantError error
	}{
		{"clean", good, 4, false, nil},
		{"torn tail, partial line", append(bytes.Clone(good), []byte(`{"crc":12,"rec":{"seq":5,"ty`)...), 4, true, nil},
		{"bad crc on the last complete line is corruption", bytes.Join([][]byte{lines[0], lines[1], lines[2], flip(lines[3])}, nil), 3, false, ErrCorrupt},
		{"crc mismatch in the middle", bytes.Join([][]byte{lines[0], flip(lines[1]), lines[2], lines[3]}, nil), 1, false, ErrCorrupt},
		{"garbage in the middle", bytes.Join([][]byte{lines[0], []byte("not json\n"), lines[2]}, nil), 1, false, ErrCorrupt},
		{"sequence gap", bytes.Join([][]byte{lines[0], lines[2]}, nil), 1, false, ErrCorrupt},
		{"empty", nil, 0, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, valid, torn, err := ReadJournal(bytes.NewReader(tc.data))
			if !errors.Is(err, tc.wantError) || (tc.wantError == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantError)
			}
			if len(out) != tc.wantRecs || torn != tc.wantTorn {
				t.Fatalf("got %d records torn=%v, want %d torn=%v", len(out), torn, tc.wantRecs, tc.wantTorn)
			}
			var prefix int64
			for _, l := range lines[:min(tc.wantRecs, len(lines))] {
				prefix += int64(len(l))
			}
			if valid != prefix {
				t.Errorf("valid length %d, want %d", valid, prefix)
			}
		})
	}
}

func TestJournalFileLockAndPerms(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	j, err := createJournal(state, "tx1")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.append(&Record{Type: recBegin, TxID: "tx1"}); err != nil {
		t.Fatal(err)
	}
	// a second opener, even in the same process, is refused
	if _, _, err := openJournal(state, "tx1"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if _, err := createJournal(state, "tx1"); err == nil {
		t.Fatal("creating an existing journal succeeded")
	}
	for p, want := range map[string]os.FileMode{state: 0o700, journalDir(state): 0o700, journalPath(state, "tx1"): 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
	// while held, list says running
	h, locked, err := readTx(state, "tx1")
	if err != nil || !locked || h.summary(locked).State != StateRunning {
		t.Fatalf("readTx while held: locked=%v err=%v", locked, err)
	}
	j.close()
	h, locked, err = readTx(state, "tx1")
	if err != nil || locked || h.summary(locked).State != StateInterrupted {
		t.Fatalf("readTx after close: locked=%v err=%v", locked, err)
	}
	// a torn tail is truncated when the journal is reopened for append
	f, _ := os.OpenFile(journalPath(state, "tx1"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"crc":1,"rec":{"seq":2`)
	f.Close()
	j2, rs, err := openJournal(state, "tx1")
	if err != nil || len(rs) != 1 {
		t.Fatalf("reopen: %d records, %v", len(rs), err)
	}
	if err := j2.append(&Record{Type: recCommitted}); err != nil {
		t.Fatal(err)
	}
	j2.close()
	data, _ := os.ReadFile(journalPath(state, "tx1"))
	if _, _, torn, err := ReadJournal(bytes.NewReader(data)); torn || err != nil || strings.Count(string(data), "\n") != 2 {
		t.Fatalf("after truncate+append: torn=%v err=%v data=%q", torn, err, data)
	}
}

func TestValidID(t *testing.T) {
	for id, ok := range map[string]bool{"20261121T101500-ab12cd": true, "my-tx.1": true, "": false, "../x": false, "a/b": false, ".hidden": false, strings.Repeat("a", 129): false} {
		if err := ValidID(id); (err == nil) != ok {
			t.Errorf("ValidID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func FuzzReadJournal(f *testing.F) {
	f.Add(encodeAll(f, recs(3)))
	f.Add([]byte(`{"crc":0,"rec":{}}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, valid, _, err := ReadJournal(bytes.NewReader(data))
		if valid > int64(len(data)) {
			t.Fatalf("valid %d > len %d", valid, len(data))
		}
		// every record returned was verified: re-encoding the valid prefix
		// reads back the same records
		if err == nil {
			again, v2, torn, err2 := ReadJournal(bytes.NewReader(data[:valid]))
			if err2 != nil || torn || v2 != valid || len(again) != len(out) {
				t.Fatalf("prefix reread: %d/%d records, torn=%v err=%v", len(again), len(out), torn, err2)
			}
		}
		for i, r := range out {
			if r.Seq != i+1 {
				t.Fatalf("record %d has seq %d", i, r.Seq)
			}
		}
		_, _ = buildHistory(out) // must not panic
	})
}

// TestCorruptLastLineExits3 is issue 12 case 6: a complete last line with
// a bad CRC is corruption, not a torn write: rollback refuses with exit 3
// (it used to drop the line, so its step was never undone) and the
// journal is left as it was for the operator.
func TestCorruptLastLineExits3(t *testing.T) {
	state := t.TempDir()
	j, err := createJournal(state, "T1")
	if err != nil {
		t.Fatal(err)
	}
	j.append(&Record{Type: recBegin, TxID: "T1", Name: "t"})
	j.append(&Record{Type: recIntent, Step: 1, Kind: "file.write"})
	j.close()
	p := journalPath(state, "T1")
	data, _ := os.ReadFile(p)
	i := bytes.LastIndex(data[:len(data)-1], []byte("\n")) + 10
	data[i] ^= 1 // flip a bit inside the last, complete line
	os.WriteFile(p, data, 0o600)
	err = RollbackID(context.Background(), "T1", nil, WithStateDir(state), WithFailpoints(""))
	if ExitCode(err) != ExitRollbackIncomplete || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("rollback: exit %d, %v; want exit 3, corrupt", ExitCode(err), err)
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(after, data) {
		t.Error("the corrupt journal was changed")
	}
}
