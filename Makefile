# bofh — see README.md. `make demo` shows the main job on a sandbox;
# `make test` installs what the tests need and runs them all.
GO       ?= go
BIN      := bin/bofh
FUZZTIME ?= 2s
PKGS     := ./...
export BOFH_REPO := $(CURDIR)

.PHONY: all build test test-full test-unit test-race lint deps fuzz fuzz-short bench demo clean test-extra
all: build

build:
	$(GO) build -o $(BIN) ./cmd/bofh

# Debian packages every test needs: one list per area under deps/.
deps:
	scripts/deps.sh deps/*.txt

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags vm $(PKGS)
	$(GO) vet -tags lab $(PKGS)

# Host tests: unit, transcript, crash matrix, and root tests on loop
# devices, mounts and network namespaces (run as root; BOFH_SKIP_ROOT=1 to
# opt out loudly).
test-unit: build
	$(GO) test -count=1 -timeout 25m $(PKGS)

test-race:
	$(GO) test -race -count=1 -timeout 20m ./atomic/ ./run/

# Every fuzz target, briefly (make fuzz FUZZTIME=1m for a real session).
fuzz-short:
	scripts/fuzz.sh $(FUZZTIME)
fuzz:
	scripts/fuzz.sh $(if $(filter 2s,$(FUZZTIME)),1m,$(FUZZTIME))

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./atomic/ ./...

# Fragments (mk/*.mk) add their own targets and hook into `make test`
# through the double-colon test-extra rule.
test-extra::
	@true

-include mk/*.mk

ifeq ($(wildcard mk/lab.mk),)
test-vm:
	@echo "test-vm: the VM lab (mk/lab.mk) is missing" >&2; exit 1
endif

test: deps lint test-unit test-race fuzz-short test-vm test-extra
	@echo "make test: all tiers passed"

# make test with the exhaustive crash matrices of the VM tests (every
# step × before/after × rollback/resume): about an hour under TCG. labtest
# forwards BOFH_FULL_MATRIX to the guest (which fails when it did not
# arrive) and raises its timeout to 2 hours.
test-full:
	BOFH_FULL_MATRIX=1 $(MAKE) test

demo: build
	scripts/demo.sh

clean:
	rm -rf bin
