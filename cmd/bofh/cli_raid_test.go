package main

import (
	"strings"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
)

func TestCLIRaidBadInput(t *testing.T) {
	t.Parallel()
	missing := "/dev/bofh-cli-test-missing" // members must be under /dev
	badInput(t, nil, []cliCase{
		bad("raid5 with 2 devices", "raid5 needs at least 3 devices, got 2", "raid", "create", "/dev/md0", "--level", "5", "/dev/sdx", "/dev/sdy"),
		bad("raid1 with 1 device", "raid1 needs at least 2 devices, got 1", "raid", "create", "/dev/md0", "--level", "1", "/dev/sdx"),
		bad("unknown level", `RAID level "7"`, "raid", "create", "/dev/md0", "--level", "7", "/dev/sdx", "/dev/sdy"),
		bad("level missing", "--level is required", "raid", "create", "/dev/md0", "/dev/sdx", "/dev/sdy"),
		bad("array not an md device", `array device "/etc/passwd"`, "raid", "create", "/etc/passwd", "--level", "1", "/dev/sdx", "/dev/sdy"),
		bad("member twice", "listed twice", "raid", "create", "/dev/md0", "--level", "1", "/dev/sdx", "/dev/sdx"),
		bad("member missing", "no such file or directory", "raid", "create", "/dev/md0", "--level", "1", missing, missing+"2"),
		bad("chunk on raid1", "raid1 has no chunk size", "raid", "create", "/dev/md0", "--level", "1", "--chunk", "64", "/dev/sdx", "/dev/sdy"),
		bad("grow without count", "--raid-devices N is required", "raid", "grow", "/dev/md0"),
		bad("grow to 0", "raid_devices 0", "raid", "grow", "/dev/md0", "--raid-devices", "0"),
		bad("relative member", `member device "relative"`, "raid", "add", "/dev/md0", "relative"),
		bad("show a non-md device", `array device "/etc/passwd"`, "raid", "show", "/etc/passwd"),
	})
}

// mdadm --create is only printed; the members keep no superblock. There is
// no md driver on this host, so 'raid status/show -o json' run in the VM lab.
func TestCLIRaidDryRun(t *testing.T) {
	t.Parallel()
	a := hosttest.LoopFile(t, 16<<20)
	b := hosttest.LoopFile(t, 16<<20)
	dryRun(t, nil, "", []string{"raid", "create", "/dev/md/bofhclitest", "--level", "1", a, b},
		"would run: mdadm --create /dev/md/bofhclitest --run --level=raid1 --raid-devices=2 --metadata=1.2 "+a+" "+b)
	for _, d := range []string{a, b} {
		if out := hosttest.Cmd(t, "wipefs", "--no-act", "--noheadings", d); strings.TrimSpace(out) != "" {
			t.Errorf("%s holds a signature after a dry run: %s", d, out)
		}
	}
	helpExample(t, []string{"raid"}, []string{"raid", "create"}, []string{"raid", "grow"})
}
