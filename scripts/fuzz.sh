#!/usr/bin/env bash
# Run every fuzz target in the module for the given time each.
#
# The targets are what `go test -list '^Fuzz'` reports for each package of
# `go list ./...` that has test files (the testing package's own view, not
# a grep). Listing fails the run when a package does not build, and so
# does finding no target at all.
#
# A target whose only failure is "context deadline exceeded" with no
# failing input written (the fuzzing coordinator timing out a worker at
# the end of -fuzztime on a loaded machine, a Go toolchain flake) is run
# once more; a real crasher always writes its input under testdata/fuzz/.
set -euo pipefail
t=${1:-2s}
fail=0
log=$(mktemp)
errs=$(mktemp)
list=$(mktemp)
trap 'rm -f "$log" "$errs" "$list"' EXIT

pkgs=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...)
[ -n "$pkgs" ] || { echo "fuzz: go list found no package with tests" >&2; exit 1; }
# One go test for all packages: each package's names, then its "ok" line
# (on stdout; go's own messages, e.g. "go: downloading", go to stderr).
# shellcheck disable=SC2086
if ! go test -list '^Fuzz' $pkgs >"$log" 2>"$errs"; then
  cat "$log" "$errs" >&2
  echo "fuzz: listing the fuzz targets failed" >&2
  exit 1
fi
names=()
while IFS= read -r line; do
  case "$line" in
    Fuzz*) names+=("$line") ;;
    ok*)
      pkg=$(printf '%s\n' "$line" | awk -F'\t' '{print $2}')
      for n in ${names[@]+"${names[@]}"}; do printf '%s %s\n' "$pkg" "$n"; done
      names=()
      ;;
    '?'*|'') ;;
    *) echo "fuzz: unexpected line from go test -list: $line" >&2; exit 1 ;;
  esac
done <"$log" | sort >"$list"
[ -s "$list" ] || { echo "fuzz: no fuzz target found" >&2; exit 1; }
echo "fuzz: $(wc -l <"$list") targets"

while read -r pkg name; do
  for try in 1 2; do
    echo "fuzz $pkg $name ($t)"
    if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >"$log" 2>&1; then
      break
    fi
    if [ "$try" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
      echo "  (coordinator deadline flake, no failing input: running it again)"
      continue
    fi
    cat "$log"; fail=1
    break
  done
done <"$list"
exit $fail
