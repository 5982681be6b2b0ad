# Real-kernel VM lab (issue 3). See docs/lab.md.
# Included by the top-level Makefile; `make test` depends on test-vm.

GO ?= go
LABTEST := $(GO) run ./internal/vmtest/cmd/labtest
LABRUN := $(GO) run ./internal/vmtest/cmd/vmrun

.PHONY: test-vm lab-prepare lab-shell lab-hosttest testdata-capture lab-bench lab-clean

# Every `//go:build vm` test in one guest, then the host-driven `lab` tests
# (two-guest DRBD). Fails if the lab cannot start, unless BOFH_SKIP_VM=1.
test-vm:
	$(LABTEST) $(LABTEST_ARGS)

# Download the kernel and build the initramfs into the cache ($$BOFH_LAB_CACHE).
lab-prepare:
	$(LABRUN) -prepare

# An interactive root shell in a guest on this terminal (Ctrl-A X quits qemu).
lab-shell:
	$(LABRUN) -i /bin/bash -i

# Host-side root helper tests (loop devices, mounts, netns).
lab-hosttest:
	$(GO) test -count=1 ./internal/hosttest/

# Run the real tools in the lab and refresh testdata/capture/.
testdata-capture:
	$(LABRUN) -share $(CURDIR)/testdata/capture -dir $(CURDIR) -timeout 20m -- /bin/bash $(CURDIR)/scripts/lab/capture.sh $(CURDIR)/testdata/capture

# Time tool start-up and LVM commands in a guest; checks LVM on md and on LUKS.
lab-bench:
	$(LABRUN) -dir $(CURDIR) -timeout 20m -- /bin/bash $(CURDIR)/scripts/lab/bench.sh

lab-clean:
	rm -rf "$${BOFH_LAB_CACHE:-$${XDG_CACHE_HOME:-/var/cache}/bofh-lab}"
