package lvm

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// ErrBadSize is wrapped by every size parsing error.
var ErrBadSize = errors.New("invalid size")

// Size is a parsed size argument: an absolute size in bytes ("10G",
// "512MiB"), a number of extents ("100"), or a percentage of something LVM
// knows ("100%FREE", "50%VG", "20%PVS", "10%ORIGIN"). A Size parsed for a
// resize may be relative ("+10G", "-5").
type Size struct {
	// Bytes is an absolute size in bytes (when Extents and Percent are 0).
	Bytes int64
	// Extents is a number of extents (when Bytes and Percent are 0).
	Extents int64
	// Percent (1-100) of Of.
	Percent int64
	// Of is FREE, VG, PVS or ORIGIN when Percent is set.
	Of string
	// Sign is +1 or -1 for a relative size, 0 for an absolute one.
	Sign int
}

var units = map[string]int64{
	"":  0, // bare number: extents
	"b": 1, "B": 1,
	"s": 512, "S": 512,
	"k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "kiB": 1 << 10,
	"m": 1 << 20, "M": 1 << 20, "MiB": 1 << 20,
	"g": 1 << 30, "G": 1 << 30, "GiB": 1 << 30,
	"t": 1 << 40, "T": 1 << 40, "TiB": 1 << 40,
	"p": 1 << 50, "P": 1 << 50, "PiB": 1 << 50,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15,
}

var percentOf = map[string]bool{"FREE": true, "VG": true, "PVS": true, "ORIGIN": true}

// ParseSize parses a size: "10G", "1.5GiB", "512MiB", "4096B", "2048s"
// (sectors), "100" (extents), "100%FREE", "50%VG", "20%PVS", "10%ORIGIN".
// K, M, G, T, P and their KiB… forms are powers of 1024 (as in lvcreate
// -L); kB, MB, GB, TB, PB are powers of 1000. A byte size must be a whole
// number of bytes and larger than zero. Relative sizes ("+10G") are refused:
// see ParseResize.
func ParseSize(s string) (Size, error) {
	z, err := parseSize(s)
	if err == nil && z.Sign != 0 {
		return Size{}, fmt.Errorf("%w: %q: a relative size is only allowed for a resize", ErrBadSize, s)
	}
	return z, err
}

// ParseResize parses a size like ParseSize, also accepting "+" or "-" in
// front for a change relative to the current size.
func ParseResize(s string) (Size, error) { return parseSize(s) }

func parseSize(s string) (Size, error) {
	bad := func(why string) (Size, error) {
		return Size{}, fmt.Errorf("%w: %q: %s (want e.g. 10G, 512MiB, 100 extents, 100%%FREE, 50%%VG)", ErrBadSize, s, why)
	}
	var z Size
	rest := strings.TrimSpace(s)
	if rest != s || s == "" {
		return bad("empty or padded")
	}
	switch rest[0] {
	case '+':
		z.Sign, rest = 1, rest[1:]
	case '-':
		z.Sign, rest = -1, rest[1:]
	}
	if num, of, ok := strings.Cut(rest, "%"); ok {
		if !percentOf[of] {
			return bad("a percentage must be of FREE, VG, PVS or ORIGIN")
		}
		p, err := strconv.ParseInt(num, 10, 64)
		if err != nil || p < 1 || p > 100 || !allDigits(num) {
			return bad("the percentage must be a whole number from 1 to 100")
		}
		z.Percent, z.Of = p, of
		return z, nil
	}
	i := 0
	for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
		i++
	}
	num, unit := rest[:i], rest[i:]
	mult, ok := units[unit]
	if !ok {
		return bad("unknown unit " + strconv.Quote(unit))
	}
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return bad("not a number")
	}
	if mult == 0 {
		if strings.Contains(num, ".") {
			return bad("extents must be a whole number")
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n < 1 {
			return bad("the number of extents must be from 1 to 2^63-1")
		}
		z.Extents = n
		return z, nil
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return bad("not a number")
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return bad("not a whole number of bytes")
	}
	b := r.Num()
	if b.Sign() <= 0 || !b.IsInt64() || b.Int64() > math.MaxInt64/2 {
		return bad("out of range")
	}
	z.Bytes = b.Int64()
	return z, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// String renders the size back in the form ParseResize accepts.
func (z Size) String() string {
	sign := map[int]string{1: "+", -1: "-"}[z.Sign]
	switch {
	case z.Percent > 0:
		return fmt.Sprintf("%s%d%%%s", sign, z.Percent, z.Of)
	case z.Extents > 0:
		return fmt.Sprintf("%s%d", sign, z.Extents)
	}
	return fmt.Sprintf("%s%dB", sign, z.Bytes)
}

// Args returns the lvcreate/lvresize option for the size: "-L" with bytes
// ("10737418240b"), or "-l" with extents or a percentage.
func (z Size) Args() []string {
	sign := map[int]string{1: "+", -1: "-"}[z.Sign]
	switch {
	case z.Percent > 0:
		return []string{"-l", fmt.Sprintf("%s%d%%%s", sign, z.Percent, z.Of)}
	case z.Extents > 0:
		return []string{"-l", fmt.Sprintf("%s%d", sign, z.Extents)}
	}
	// LVM wants a whole number of 512-byte sectors; it rounds up to
	// extents anyway
	return []string{"-L", fmt.Sprintf("%s%db", sign, (z.Bytes+511)/512*512)}
}

// ExtentsIn works out how many extents the size means in vg, for an LV
// currently cur extents long (0 for a new one) whose origin (for
// %ORIGIN) is origin extents long. Byte sizes are rounded up to whole
// extents, percentages down, as LVM does.
func (z Size) ExtentsIn(vg *VG, cur, origin int64) (int64, error) {
	if vg == nil || vg.ExtentSize <= 0 {
		return 0, errors.New("volume group with unknown extent size")
	}
	var n int64
	switch {
	case z.Percent > 0:
		base := vg.ExtentCount
		switch z.Of {
		case "FREE":
			base = vg.FreeCount
		case "ORIGIN":
			base = origin
		}
		n = base * z.Percent / 100
	case z.Extents > 0:
		n = z.Extents
	default:
		n = (z.Bytes + vg.ExtentSize - 1) / vg.ExtentSize
	}
	switch z.Sign {
	case 1:
		n = cur + n
	case -1:
		n = cur - n
	}
	if n < 1 {
		return 0, fmt.Errorf("%w: %s leaves %d extents", ErrBadSize, z, n)
	}
	return n, nil
}
