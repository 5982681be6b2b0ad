# tree: benchmarks (50,000 files; root, btrfs loop) — not part of make test
.PHONY: bench-tree
bench-tree:
	$(GO) test -run '^$$' -bench . -benchtime 2x -timeout 30m ./tree/
