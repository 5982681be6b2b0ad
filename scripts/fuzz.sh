#!/usr/bin/env bash
# Run every fuzz target in the module for the given time each.
set -euo pipefail
t=${1:-2s}
fail=0
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "fuzz $pkg $name ($t)"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$t" "$pkg" >/tmp/bofh-fuzz.log 2>&1; then
    cat /tmp/bofh-fuzz.log; fail=1
  fi
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed -E 's/:func /:/' | sort)
exit $fail
