package crypt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

// classifiers are the classes classify gives cryptsetup and dmsetup errors.
var classifiers = []lab.Classifier{
	{Class: "wrong-passphrase", Is: func(err error) bool { return errors.Is(classify(err), ErrWrongPassphrase) }},
	{Class: "not-luks", Is: func(err error) bool { return errors.Is(classify(err), ErrNotLUKS) }},
	{Class: "busy", Is: func(err error) bool { return errors.Is(classify(err), ErrBusy) }},
	{Class: "no-mapping", Is: func(err error) bool { return errors.Is(classify(err), ErrNoMapping) }},
}

// errorClasses is what each err-* capture of testdata/capture/crypt must
// be classified as (nil: no class).
var errorClasses = map[string][]string{
	"err-close-missing.txt":        {"no-mapping"}, // "Device nosuchmapping is not active."
	"err-dmsetup-info-missing.txt": {"no-mapping"}, // "Device does not exist."
	"err-isluks-not-luks.txt":      nil,            // exit 1, no message (bofh reads headers in Go)
	"err-luks1-dump-json.txt":      nil,            // "Dump operation is not supported for this device type."
	"err-luksdump-not-luks.txt":    {"not-luks"},
	"err-open-device-in-use.txt":   {"busy"}, // "Cannot use device … which is in use"
	"err-open-keyslot-unused.txt":  nil,      // "No usable keyslot is available." (a --key-slot bofh never passes)
	"err-open-name-in-use.txt":     {"busy"}, // "Device capluks2 already exists."
	"err-open-wrong-key.txt":       {"wrong-passphrase"},
	"err-status-missing.txt":       nil, // exit 4, stdout "… is inactive." (bofh asks dmsetup, not status)
}

// TestCaptures parses every capture of testdata/capture/crypt and
// classifies every error capture.
func TestCaptures(t *testing.T) {
	d := lab.Open(t, "crypt")

	dumps := map[string]*Metadata{}
	for _, tc := range []struct {
		file   string
		slots  []int
		kdf    KDF // without the salt
		sector int
	}{
		{"luks2-dump.json", []int{0, 1}, KDF{Type: "pbkdf2", Hash: "sha256", Iterations: 1000}, 512},
		{"luks2-argon2id-dump.json", []int{0}, KDF{Type: "argon2id", Time: 4, Memory: 32, CPUs: 1}, 512},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m, err := ParseDump(d.Read(t, tc.file).Stdout)
			if err != nil {
				t.Fatal(err)
			}
			dumps[tc.file] = m
			if diff := cmp.Diff(tc.slots, m.ActiveSlots()); diff != "" {
				t.Errorf("slots (-want +got):\n%s", diff)
			}
			for _, s := range tc.slots {
				k := m.Keyslots[s]
				if k.KDF.Salt == "" {
					t.Errorf("slot %d: no salt", s)
				}
				k.KDF.Salt = ""
				if diff := cmp.Diff(tc.kdf, k.KDF); diff != "" {
					t.Errorf("slot %d kdf (-want +got):\n%s", s, diff)
				}
				if k.Type != "luks2" || k.KeySize != 64 || k.Area.Encryption != "aes-xts-plain64" || k.AF.Stripes != 4000 {
					t.Errorf("slot %d: %+v", s, k)
				}
			}
			if len(m.Tokens) != 0 {
				t.Errorf("tokens %v, want none", m.Tokens)
			}
			seg := m.Segments[0]
			if seg.Type != "crypt" || seg.Encryption != "aes-xts-plain64" || seg.SectorSize != tc.sector || seg.Offset != 16<<20 || !seg.Size.Dynamic {
				t.Errorf("segment 0: %+v", seg)
			}
			if dg := m.Digests[0]; dg.Type != "pbkdf2" || !slices.Equal([]int(dg.Segments), []int{0}) || !slices.Equal([]int(dg.Keyslots), tc.slots) {
				t.Errorf("digest 0: %+v", dg)
			}
			if m.Config.JSONSize != 12288 || m.Config.KeyslotsSize != 16744448 {
				t.Errorf("config: %+v", m.Config)
			}
		})
	}

	// cryptsetup's text luksDump of the same LUKS2 header agrees with what
	// ParseDump read from its JSON.
	t.Run("luks2-dump.txt", func(t *testing.T) {
		txt := textDump(d.Read(t, "luks2-dump.txt").Stdout)
		m := dumps["luks2-dump.json"]
		if m == nil {
			t.Fatal("luks2-dump.json did not parse")
		}
		want := map[string]string{"Version": "2", "Label": "bofhcap",
			"segment 0 offset": strconv.FormatUint(uint64(m.Segments[0].Offset), 10),
			"segment 0 cipher": m.Segments[0].Encryption,
			"segment 0 sector": strconv.Itoa(m.Segments[0].SectorSize)}
		for _, s := range m.ActiveSlots() {
			k := m.Keyslots[s]
			p := "slot " + strconv.Itoa(s) + " "
			want[p+"PBKDF"] = k.KDF.Type
			want[p+"Iterations"] = strconv.Itoa(k.KDF.Iterations)
			want[p+"Area offset"] = strconv.FormatUint(uint64(k.Area.Offset), 10)
			want[p+"Area length"] = strconv.FormatUint(uint64(k.Area.Size), 10)
		}
		got := map[string]string{}
		for k := range want {
			got[k] = txt[k]
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("text luksDump vs ParseDump (-json +text):\n%s", diff)
		}
		// blkid of the same device (a blockdev capture) reads the same header
		if b, err := ParseBlkid(lab.ReadFile(t, "blockdev", "blkid-luks2.txt").Stdout); err != nil ||
			b.Values["UUID"] != txt["UUID"] || b.Values["LABEL"] != txt["Label"] || len(txt["UUID"]) != 36 {
			t.Errorf("luksDump UUID %q label %q, blkid %v (%v)", txt["UUID"], txt["Label"], b.Values, err)
		}
	})

	// LUKS1 has no JSON metadata (err-luks1-dump-json): the text dump is
	// all cryptsetup says; it lists one enabled slot of 8.
	t.Run("luks1-dump.txt", func(t *testing.T) {
		b := d.Read(t, "luks1-dump.txt").Stdout
		if !bytes.Contains(b, []byte("Version:       \t1\n")) || bytes.Count(b, []byte(": ENABLED")) != 1 ||
			bytes.Count(b, []byte(": DISABLED")) != 7 || !bytes.Contains(b, []byte("Key Slot 0: ENABLED")) {
			t.Errorf("luks1 dump:\n%s", b)
		}
		uuid := textDump(b)["UUID"]
		if p, err := ParseBlkid(lab.ReadFile(t, "blockdev", "blkid-luks1.txt").Stdout); err != nil || p.Values["UUID"] != uuid || len(uuid) != 36 {
			t.Errorf("luksDump UUID %q, blkid %v (%v)", uuid, p.Values, err)
		}
	})

	// crypt.Mapping's dmsetup query and `cryptsetup status` describe the
	// same open mapping.
	var info MapInfo
	t.Run("dmsetup-info.txt", func(t *testing.T) {
		c := d.Read(t, "dmsetup-info.txt")
		f := run.NewFake(t)
		f.Expect(mappingArgv("capluks2")...).Out(string(c.Stdout))
		m, err := Mapping(context.Background(), f, "capluks2")
		f.Done()
		if err != nil {
			t.Fatal(err)
		}
		info = *m
		v, uuid, ok := m.LUKS()
		if m.Name != "capluks2" || len(m.Devices) != 1 || m.Open != 0 || v != 2 || !ok || len(uuid) != 32 {
			t.Errorf("mapping %+v (LUKS %d %q %v)", m, v, uuid, ok)
		}
		if c.Command != strings.Join(mappingArgv("capluks2"), " ") {
			t.Errorf("captured %q, but crypt.Mapping runs %q", c.Command, strings.Join(mappingArgv("capluks2"), " "))
		}
	})
	t.Run("status-luks2.txt", func(t *testing.T) {
		st := textDump(d.Read(t, "status-luks2.txt").Stdout)
		if st["type"] != "LUKS2" || st["cipher"] != "aes-xts-plain64" || st["device"] == "" {
			t.Errorf("status: %v", st)
		}
		if len(info.Devices) == 1 && st["device"] != "/dev/"+info.Devices[0] {
			t.Errorf("status device %q, dmsetup says %v", st["device"], info.Devices)
		}
	})
	t.Run("Mapping/err-dmsetup-info-missing.txt", func(t *testing.T) {
		c := d.Read(t, "err-dmsetup-info-missing.txt")
		f := run.NewFake(t)
		f.Expect(mappingArgv("nosuchmapping")...).Out(string(c.Stdout)).Fail(c.Exit, string(c.Stderr))
		_, err := Mapping(context.Background(), f, "nosuchmapping")
		f.Done()
		if !errors.Is(err, ErrNoMapping) {
			t.Errorf("Mapping of a missing mapping: %v, want ErrNoMapping", err)
		}
	})

	d.CheckErrors(t, errorClasses, classifiers)
}

func mappingArgv(name string) []string {
	return []string{"dmsetup", "info", "-c", "--noheadings", "--separator", ";", "-o", strings.Join(mapFields, ","), name}
}

// textDump reads "Key: value" lines of cryptsetup's text output; keys of
// the numbered data segments and key slots get a "segment N " or
// "slot N " prefix.
func textDump(b []byte) map[string]string {
	out := map[string]string{}
	section, prefix := "", ""
	numbered := regexp.MustCompile(`^  (\d+): (\S+)$`)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if m := numbered.FindStringSubmatch(line); m != nil {
			switch section {
			case "Data segments:":
				prefix = "segment " + m[1] + " "
			case "Keyslots:":
				prefix = "slot " + m[1] + " "
			default:
				prefix = section + " " + m[1] + " "
			}
			continue
		}
		if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") && strings.HasSuffix(line, ":") {
			section, prefix = line, ""
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		v = strings.TrimSuffix(strings.TrimSuffix(v, " [bytes]"), " sectors")
		if _, seen := out[prefix+strings.TrimSpace(k)]; !seen {
			out[prefix+strings.TrimSpace(k)] = v
		}
	}
	return out
}
