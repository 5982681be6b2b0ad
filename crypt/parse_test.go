package crypt

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	lab "github.com/bofhkit/bofh/internal/capture"
)

func TestParseDumpCaptured(t *testing.T) {
	tests := []struct {
		file     string
		slots    []int
		kdf0     string
		mem0     int
		tokens   []int
		cipher   string
		sector   int
		offset   uint64
		keyslots uint64
	}{
		// a token and 4096-byte sectors, which testdata/capture/crypt
		// (read by capture_test.go) does not have
		{"luksdump-luks2-2slots-token.json", []int{0, 1}, "argon2id", 32, []int{3}, "aes-xts-plain64", 4096, 16 << 20, 16744448},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "testdata", "crypt", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseDump(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.ActiveSlots(); !reflect.DeepEqual(got, tt.slots) {
				t.Errorf("slots %v, want %v", got, tt.slots)
			}
			if k := m.Keyslots[0].KDF; k.Type != tt.kdf0 || k.Memory != tt.mem0 || k.Salt == "" {
				t.Errorf("kdf of slot 0: %+v", k)
			}
			var toks []int
			for id, tok := range m.Tokens {
				toks = append(toks, id)
				if tok.Type != "bofh-test" || !reflect.DeepEqual([]int(tok.Keyslots), []int{1}) || len(tok.Raw) == 0 {
					t.Errorf("token %d: %+v", id, tok)
				}
			}
			if !reflect.DeepEqual(toks, tt.tokens) {
				t.Errorf("tokens %v, want %v", toks, tt.tokens)
			}
			s := m.Segments[0]
			if s.Encryption != tt.cipher || s.SectorSize != tt.sector || uint64(s.Offset) != tt.offset || !s.Size.Dynamic {
				t.Errorf("segment 0: %+v", s)
			}
			d := m.Digests[0]
			if d.Type != "pbkdf2" || !reflect.DeepEqual([]int(d.Segments), []int{0}) || len(d.Keyslots) != len(tt.slots) {
				t.Errorf("digest 0: %+v", d)
			}
			if uint64(m.Config.KeyslotsSize) != tt.keyslots || m.Config.JSONSize != 12288 {
				t.Errorf("config: %+v", m.Config)
			}
			if m.Keyslots[0].Area.Encryption != "aes-xts-plain64" || m.Keyslots[0].AF.Stripes != 4000 {
				t.Errorf("keyslot 0: %+v", m.Keyslots[0])
			}
		})
	}
}

func TestParseDumpBad(t *testing.T) {
	for _, in := range []string{``, `{`, `[]`, `{"keyslots":{"x":{}}}`, `{"segments":{}}`,
		`{"segments":{"0":{"offset":"-1"}}}`, `{"segments":{"0":{"size":"big"}}}`,
		`{"segments":{"0":{}},"digests":{"0":{"keyslots":["a"]}}}`} {
		if _, err := ParseDump([]byte(in)); err == nil {
			t.Errorf("ParseDump(%q): no error", in)
		}
	}
}

func FuzzParseDump(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "crypt", "luksdump-luks2-2slots-token.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	lab.Seed(f, "crypt", func(n string) bool { return strings.HasSuffix(n, "-dump.json") })
	f.Add([]byte(`{"segments":{"0":{"size":"dynamic"}},"tokens":{"1":{"keyslots":[0]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseDump(b)
		if err != nil {
			return
		}
		_ = m.ActiveSlots()
		if len(m.Segments) == 0 {
			t.Fatal("accepted metadata without segments")
		}
	})
}

func TestParseBlkid(t *testing.T) {
	// blkid -p -o export captures of testdata/capture/blockdev (blockdev
	// owns them), and a GPT disk no capture has
	tests := []struct {
		file, typ, version string
	}{
		{"blkid-ext4.txt", "ext4", "1.0"},
		{"blkid-xfs.txt", "xfs", ""},
		{"blkid-btrfs.txt", "btrfs", ""},
		{"blkid-vfat.txt", "vfat", "FAT16"},
		{"blkid-luks1.txt", "crypto_LUKS", "1"},
		{"blkid-luks2.txt", "crypto_LUKS", "2"},
		{"blkid-lvm2-member.txt", "LVM2_member", "LVM2 001"}, // escaped space
		{"blkid-linux-raid-member.txt", "linux_raid_member", "1.2"},
		{"err-blkid-empty.txt", "", ""},
		{"gpt", "gpt", ""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			var b []byte
			if tt.file == "gpt" {
				var err error
				if b, err = os.ReadFile(filepath.Join("..", "testdata", "blockdev", "blkid-gpt.txt")); err != nil {
					t.Fatal(err)
				}
			} else {
				b = lab.ReadFile(t, "blockdev", tt.file).Stdout
			}
			p, err := ParseBlkid(b)
			if err != nil {
				t.Fatal(err)
			}
			if p.Type() != tt.typ || p.Empty() != (tt.typ == "") || p.Values["VERSION"] != tt.version {
				t.Errorf("type %q version %q, want %q %q", p.Type(), p.Values["VERSION"], tt.typ, tt.version)
			}
			if (p.Values["UUID"] == "") != (tt.typ == "" || tt.typ == "gpt") {
				t.Errorf("uuid %q", p.Values["UUID"])
			}
		})
	}
	p, err := ParseBlkid([]byte("TYPE=crypto_LUKS\nLABEL=a\\ b\\\"c\n"))
	if err != nil || p.Values["LABEL"] != `a b"c` || p.Type() != "crypto_LUKS" {
		t.Errorf("escaped: %v %v", p, err)
	}
	if _, err := ParseBlkid([]byte("no equals sign\n")); err == nil {
		t.Error("bad line accepted")
	}
}

func FuzzParseBlkid(f *testing.F) {
	f.Add([]byte("DEVNAME=/dev/loop1\nTYPE=ext4\nUUID=x\n"))
	f.Add([]byte("LABEL=a\\ b\\"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseBlkid(b)
		if err == nil && p.Values == nil {
			t.Fatal("nil values")
		}
	})
}

func TestParseMapInfo(t *testing.T) {
	tests := []struct {
		in   string
		want []MapInfo
		err  bool
	}{
		{"cr0;CRYPT-LUKS2-8e4dc7052f024afa969e1a215e165985-cr0;loop0;1\n",
			[]MapInfo{{Name: "cr0", UUID: "CRYPT-LUKS2-8e4dc7052f024afa969e1a215e165985-cr0", Devices: []string{"loop0"}, Open: 1}}, false},
		{"vg-lv;LVM-abc;sda,sdb;0\n", []MapInfo{{Name: "vg-lv", UUID: "LVM-abc", Devices: []string{"sda", "sdb"}, Open: 0}}, false},
		{"No devices found\n", nil, false},
		{"a;b;c\n", nil, true},
		{"a;b;c;x\n", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseMapInfo([]byte(tt.in))
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMapInfo(%q) = %+v, %v", tt.in, got, err)
		}
	}
	m := MapInfo{UUID: "CRYPT-LUKS2-8e4dc7052f024afa969e1a215e165985-cr0"}
	v, u, ok := m.LUKS()
	if v != 2 || u != "8e4dc7052f024afa969e1a215e165985" || !ok || !m.Of(&Header{UUID: "8e4dc705-2f02-4afa-969e-1a215e165985"}) {
		t.Errorf("LUKS() = %d %q %v", v, u, ok)
	}
	if m.Of(&Header{UUID: "00000000-2f02-4afa-969e-1a215e165985"}) {
		t.Error("Of matched another header")
	}
	if _, _, ok := (MapInfo{UUID: "LVM-x"}).LUKS(); ok {
		t.Error("LVM mapping taken for LUKS")
	}
}

func FuzzParseMapInfo(f *testing.F) {
	f.Add([]byte("cr0;CRYPT-LUKS2-8e4dc7052f024afa969e1a215e165985-cr0;loop0;1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := ParseMapInfo(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			m.LUKS()
		}
	})
}

func TestValidation(t *testing.T) {
	one := 1
	bad := 40
	tests := []struct {
		name string
		v    interface{ Validate() error }
		ok   bool
	}{
		{"format ok", Format{Device: "/dev/loop0", KeyFile: "/k"}, true},
		{"format relative", Format{Device: "loop0", KeyFile: "/k"}, false},
		{"format no key", Format{Device: "/dev/loop0"}, false},
		{"format two keys", Format{Device: "/dev/loop0", KeyFile: "/k", Passphrase: "x"}, false},
		{"format relative key", Format{Device: "/dev/loop0", KeyFile: "k"}, false},
		{"bad cipher", Format{Device: "/dev/loop0", KeyFile: "/k", Cipher: "aes-foo-plain64"}, false},
		{"bad cipher syntax", Format{Device: "/dev/loop0", KeyFile: "/k", Cipher: "aes; rm -rf"}, false},
		{"essiv", Format{Device: "/dev/loop0", KeyFile: "/k", Cipher: "aes-cbc-essiv:sha256"}, true},
		{"bad type", Format{Device: "/dev/loop0", KeyFile: "/k", Type: "luks3"}, false},
		{"luks1 argon", Format{Device: "/dev/loop0", KeyFile: "/k", Type: "luks1", PBKDF: "argon2id"}, false},
		{"key size", Format{Device: "/dev/loop0", KeyFile: "/k", KeySize: 100}, false},
		{"few iterations", Format{Device: "/dev/loop0", KeyFile: "/k", PBKDF: "pbkdf2", PBKDFIterations: 10}, false},
		{"bad uuid", Format{Device: "/dev/loop0", KeyFile: "/k", UUID: "nope"}, false},
		{"open ok", Open{Device: "/dev/loop0", Name: "cr0", KeyFile: "/k"}, true},
		{"open bad name", Open{Device: "/dev/loop0", Name: "a/b", KeyFile: "/k"}, false},
		{"open bad backend", Open{Device: "/dev/loop0", Name: "a", KeyFile: "/k", Backend: "x"}, false},
		{"close no key", Close{Name: "cr0"}, false},
		{"add ok", AddKey{Device: "/dev/loop0", KeyFile: "/a", NewKeyFile: "/b"}, true},
		{"add bad slot", AddKey{Device: "/dev/loop0", KeyFile: "/a", NewKeyFile: "/b", Slot: &bad}, false},
		{"remove slot", RemoveKey{Device: "/dev/loop0", Slot: &one}, true},
		{"remove slot and key", RemoveKey{Device: "/dev/loop0", Slot: &one, KeyFile: "/a"}, false},
		{"change no new", ChangeKey{Device: "/dev/loop0", KeyFile: "/a"}, false},
		{"resize ok", Resize{Name: "cr0", Size: "512MiB"}, true},
		{"resize odd", Resize{Name: "cr0", Size: "1000"}, false},
		{"backup relative", HeaderBackup{Device: "/dev/loop0", File: "x"}, false},
		{"restore ok", HeaderRestore{Device: "/dev/loop0", File: "/x"}, true},
	}
	for _, tt := range tests {
		if err := tt.v.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
}

func TestParseSectors(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  bool
	}{
		{"2048s", 2048, false}, {"1MiB", 2048, false}, {"1M", 2048, false}, {"1G", 2097152, false},
		{"512", 1, false}, {"512B", 1, false}, {"100", 0, true}, {"0s", 0, true}, {"-1G", 0, true}, {"1X", 0, true},
		{"99999999999999999999T", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSectors(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSectors(%q) = %d, %v", tt.in, got, err)
		}
	}
}
