package lvm

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNameLen is the longest VG or LV name LVM accepts (NAME_LEN - 1).
const MaxNameLen = 127

// maxDMNameLen bounds the device-mapper name "vg-lv" (hyphens doubled).
const maxDMNameLen = 127

// reservedLVParts are strings LVM reserves for its internal LVs: an LV name
// containing one of them is refused (man lvm, VALID NAMES).
var reservedLVParts = []string{
	"_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_iorig", "_mimage", "_mlog",
	"_pmspare", "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
}

// reservedLVPrefixes are prefixes LVM reserves for LV names.
var reservedLVPrefixes = []string{"snapshot", "pvmove"}

// ErrBadName is wrapped by every name validation error.
var ErrBadName = errors.New("invalid name")

func checkChars(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s name is empty", ErrBadName, what)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %s name %.20q… is %d characters long, at most %d are allowed", ErrBadName, what, name, len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %s name %q is not allowed", ErrBadName, what, name)
	case name[0] == '-':
		return fmt.Errorf("%w: %s name %q must not start with '-'", ErrBadName, what, name)
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return fmt.Errorf("%w: %s name %q: character %q is not allowed (use a-z A-Z 0-9 + _ . -)", ErrBadName, what, name, name[i])
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '+' || c == '_' || c == '.' || c == '-'
}

// ValidateVGName checks a volume group name against LVM's rules: the
// characters a-z A-Z 0-9 + _ . -, not starting with '-', not "." or "..",
// at most 127 characters. It does not look at /dev (see the vg.create
// step, which refuses a name that exists under /dev).
func ValidateVGName(name string) error { return checkChars("VG", name) }

// ValidateLVName checks a logical volume name against LVM's rules: those
// of ValidateVGName, plus no reserved prefix ("snapshot", "pvmove") and none
// of the reserved parts LVM uses for internal LVs ("_tdata", "_rimage", …).
func ValidateLVName(name string) error {
	if err := checkChars("LV", name); err != nil {
		return err
	}
	for _, p := range reservedLVPrefixes {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("%w: LV name %q: the prefix %q is reserved by LVM", ErrBadName, name, p)
		}
	}
	for _, p := range reservedLVParts {
		if strings.Contains(name, p) {
			return fmt.Errorf("%w: LV name %q: %q is reserved by LVM for internal volumes", ErrBadName, name, p)
		}
	}
	return nil
}

// ValidateLVFullName checks vg and lv together: each name, and the length
// of the device-mapper name LVM builds from them ("vg-lv", '-' doubled).
func ValidateLVFullName(vg, lv string) error {
	if err := ValidateVGName(vg); err != nil {
		return err
	}
	if err := ValidateLVName(lv); err != nil {
		return err
	}
	if n := len(vg) + strings.Count(vg, "-") + 1 + len(lv) + strings.Count(lv, "-"); n > maxDMNameLen {
		return fmt.Errorf("%w: %s/%s: the device-mapper name would be %d characters long, at most %d are allowed", ErrBadName, vg, lv, n, maxDMNameLen)
	}
	return nil
}

// MaxTagLen is the longest tag LVM accepts.
const MaxTagLen = 1024

// ValidateTag checks a tag against LVM's rules: 1 to 1024 of the
// characters A-Z a-z 0-9 _ + . - / = ! : # &, not starting with '-'.
func ValidateTag(tag string) error {
	switch {
	case tag == "":
		return fmt.Errorf("%w: empty tag", ErrBadName)
	case len(tag) > MaxTagLen:
		return fmt.Errorf("%w: tag is %d characters long, at most %d are allowed", ErrBadName, len(tag), MaxTagLen)
	case tag[0] == '-':
		return fmt.Errorf("%w: tag %q must not start with '-'", ErrBadName, tag)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !nameChar(c) && !strings.ContainsRune("/=!:#&", rune(c)) {
			return fmt.Errorf("%w: tag %q: character %q is not allowed (use A-Z a-z 0-9 _ + . - / = ! : # &)", ErrBadName, tag, c)
		}
	}
	return nil
}

// TxTagPrefix starts the tag bofh puts on every VG and LV it creates.
const TxTagPrefix = "bofh_tx_"

// TxTag returns the tag that marks objects created by transaction id.
// Transaction IDs use letters, digits, '.', '_' and '-', all valid in tags.
func TxTag(id string) string { return TxTagPrefix + id }

// TxOfTags returns the transaction ID in a bofh_tx_ tag among tags, if any.
func TxOfTags(tags []string) (string, bool) {
	for _, t := range tags {
		if id, ok := strings.CutPrefix(t, TxTagPrefix); ok && id != "" {
			return id, true
		}
	}
	return "", false
}
