#!/usr/bin/env bash
# Install the Debian packages listed in the given files (one per line, '#'
# comments), once: packages already installed are not fetched again.
set -euo pipefail
want=()
for f in "$@"; do
  [ -f "$f" ] || continue
  while read -r p _; do
    case "$p" in ''|'#'*) continue;; esac
    want+=("$p")
  done <"$f"
done
[ ${#want[@]} -gt 0 ] || exit 0
missing=()
for p in "${want[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || { echo "deps: all ${#want[@]} packages installed"; exit 0; }
echo "deps: installing ${missing[*]}"
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} packages"
