package crypt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/bofhkit/bofh/run"
)

// Metadata is the LUKS2 JSON metadata area, as printed by
// `cryptsetup luksDump --dump-json-metadata` (LUKS2 only).
type Metadata struct {
	Keyslots map[int]Keyslot `json:"keyslots"`
	Tokens   map[int]Token   `json:"tokens"`
	Segments map[int]Segment `json:"segments"`
	Digests  map[int]Digest  `json:"digests"`
	Config   HeaderConfig    `json:"config"`
}

// Keyslot is one LUKS2 key slot.
type Keyslot struct {
	Type     string `json:"type"`
	KeySize  int    `json:"key_size"`
	Priority *int   `json:"priority,omitempty"`
	AF       AF     `json:"af"`
	Area     Area   `json:"area"`
	KDF      KDF    `json:"kdf"`
}

// AF is a key slot's anti-forensic splitter.
type AF struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes,omitempty"`
	Hash    string `json:"hash,omitempty"`
}

// Area is where a key slot's material lives in the header.
type Area struct {
	Type       string `json:"type"`
	Offset     Uint64 `json:"offset"`
	Size       Uint64 `json:"size"`
	Encryption string `json:"encryption,omitempty"`
	KeySize    int    `json:"key_size,omitempty"`
}

// KDF is a key slot's key derivation function: pbkdf2 (Hash, Iterations)
// or argon2i/argon2id (Time, Memory in KiB, CPUs).
type KDF struct {
	Type       string `json:"type"`
	Hash       string `json:"hash,omitempty"`
	Iterations int    `json:"iterations,omitempty"`
	Time       int    `json:"time,omitempty"`
	Memory     int    `json:"memory,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	Salt       string `json:"salt"`
}

// Segment is an encrypted data segment.
type Segment struct {
	Type   string `json:"type"`
	Offset Uint64 `json:"offset"`
	// Size is the segment size in bytes; Dynamic means "to the end of
	// the device".
	Size       SegmentSize `json:"size"`
	IVTweak    Uint64      `json:"iv_tweak"`
	Encryption string      `json:"encryption"`
	SectorSize int         `json:"sector_size"`
	Integrity  *Integrity  `json:"integrity,omitempty"`
	Flags      []string    `json:"flags,omitempty"`
}

// Integrity is a segment's dm-integrity setting.
type Integrity struct {
	Type              string `json:"type"`
	JournalEncryption string `json:"journal_encryption"`
	JournalIntegrity  string `json:"journal_integrity"`
}

// Digest verifies volume keys of some key slots and segments.
type Digest struct {
	Type       string `json:"type"`
	Keyslots   IDList `json:"keyslots"`
	Segments   IDList `json:"segments"`
	Hash       string `json:"hash,omitempty"`
	Iterations int    `json:"iterations,omitempty"`
	Salt       string `json:"salt"`
	Digest     string `json:"digest"`
}

// Token is a LUKS2 token (e.g. systemd-fido2, clevis). Raw keeps the whole
// object, with its type-specific fields.
type Token struct {
	Type     string          `json:"type"`
	Keyslots IDList          `json:"keyslots"`
	Raw      json.RawMessage `json:"-"`
}

// UnmarshalJSON keeps the raw token next to its common fields.
func (t *Token) UnmarshalJSON(b []byte) error {
	type plain Token
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*t = Token(p)
	t.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// HeaderConfig is the LUKS2 config object.
type HeaderConfig struct {
	JSONSize     Uint64        `json:"json_size"`
	KeyslotsSize Uint64        `json:"keyslots_size"`
	Flags        []string      `json:"flags,omitempty"`
	Requirements *Requirements `json:"requirements,omitempty"`
}

// Requirements lists features a LUKS2 implementation must know.
type Requirements struct {
	Mandatory []string `json:"mandatory,omitempty"`
}

// Uint64 is a LUKS2 number, written as a decimal string in the metadata.
type Uint64 uint64

// UnmarshalJSON accepts "123" and 123.
func (u *Uint64) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("number %s: %w", b, err)
	}
	*u = Uint64(n)
	return nil
}

// MarshalJSON writes the number as LUKS2 does, as a string.
func (u Uint64) MarshalJSON() ([]byte, error) {
	return []byte(`"` + strconv.FormatUint(uint64(u), 10) + `"`), nil
}

// SegmentSize is a segment size in bytes, or Dynamic.
type SegmentSize struct {
	Bytes   uint64
	Dynamic bool
}

// UnmarshalJSON accepts "dynamic" and a decimal string.
func (s *SegmentSize) UnmarshalJSON(b []byte) error {
	if string(b) == `"dynamic"` {
		*s = SegmentSize{Dynamic: true}
		return nil
	}
	var u Uint64
	if err := u.UnmarshalJSON(b); err != nil {
		return err
	}
	*s = SegmentSize{Bytes: uint64(u)}
	return nil
}

// MarshalJSON writes "dynamic" or the size as a string.
func (s SegmentSize) MarshalJSON() ([]byte, error) {
	if s.Dynamic {
		return []byte(`"dynamic"`), nil
	}
	return Uint64(s.Bytes).MarshalJSON()
}

// IDList is a list of key slot or segment numbers ("0", "1" in the JSON).
type IDList []int

// UnmarshalJSON accepts ["0","1"] and [0,1].
func (l *IDList) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make(IDList, 0, len(raw))
	for _, r := range raw {
		n, err := strconv.Atoi(string(bytes.Trim(r, `"`)))
		if err != nil || n < 0 {
			return fmt.Errorf("id %s: not a slot number", r)
		}
		out = append(out, n)
	}
	*l = out
	return nil
}

// ParseDump decodes `cryptsetup luksDump --dump-json-metadata` output.
func ParseDump(b []byte) (*Metadata, error) {
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("luksDump json: %w", err)
	}
	for id := range m.Keyslots {
		if id < 0 {
			return nil, fmt.Errorf("luksDump json: negative key slot %d", id)
		}
	}
	if len(m.Segments) == 0 {
		return nil, fmt.Errorf("luksDump json: no segments")
	}
	return &m, nil
}

// ActiveSlots returns the key slot numbers in use, sorted.
func (m *Metadata) ActiveSlots() []int {
	out := make([]int, 0, len(m.Keyslots))
	for id := range m.Keyslots {
		out = append(out, id)
	}
	sort.Ints(out)
	return out
}

// Dump runs `cryptsetup luksDump --dump-json-metadata` on a LUKS2 device
// and decodes it.
func Dump(ctx context.Context, r run.Runner, device string) (*Metadata, error) {
	out, err := run.Output(ctx, r, "cryptsetup", "luksDump", "--dump-json-metadata", device)
	if err != nil {
		return nil, classify(err)
	}
	return ParseDump(out)
}
