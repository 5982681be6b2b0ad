package blockdev

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
)

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1000 * 1000 * 1000 * 1000 * 1000,
}

// ParseSize parses a size with an optional unit: "1048576" (bytes),
// "512K", "10G", "512MiB" (binary), "10GB" (decimal). It returns an error
// wrapping atomic.ErrInvalid for anything else, for zero and negative
// sizes and for sizes that overflow.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mul, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("%w: size %q: want a number with an optional unit (K, M, G, T, P, KiB…, KB…)", atomic.ErrInvalid, s)
	}
	if strings.Contains(num, ".") {
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f <= 0 || f*float64(mul) >= math.MaxInt64 {
			return 0, fmt.Errorf("%w: size %q: bad number", atomic.ErrInvalid, s)
		}
		v := int64(f * float64(mul))
		if v <= 0 {
			return 0, fmt.Errorf("%w: size %q is zero", atomic.ErrInvalid, s)
		}
		return v, nil
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: size %q: bad number", atomic.ErrInvalid, s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("%w: size %q is zero", atomic.ErrInvalid, s)
	}
	if n > math.MaxInt64/mul {
		return 0, fmt.Errorf("%w: size %q is too large", atomic.ErrInvalid, s)
	}
	return n * mul, nil
}

// FormatSize renders bytes with a binary unit when it divides exactly.
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}
