#!/usr/bin/env bash
# Install the Debian packages listed in the given files (one per line, '#'
# comments), once: packages already installed are not fetched again. A list
# that does not exist, no list at all, or lists naming no package fail: a
# mistyped path must not pass as "nothing to install". After installing,
# every listed package must be installed.
set -euo pipefail
[ $# -gt 0 ] || { echo "deps: usage: deps.sh LIST..." >&2; exit 2; }
want=()
for f in "$@"; do
  [ -f "$f" ] || { echo "deps: no such package list: $f" >&2; exit 1; }
  while read -r p _; do
    case "$p" in ''|'#'*) continue;; esac
    want+=("$p")
  done <"$f"
done
[ ${#want[@]} -gt 0 ] || { echo "deps: the lists $* name no package" >&2; exit 1; }
mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]; }
missing=()
for p in "${want[@]}"; do
  installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || { echo "deps: all ${#want[@]} packages installed"; exit 0; }
echo "deps: installing ${missing[*]}"
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
still=()
for p in "${missing[@]}"; do
  installed "$p" || still+=("$p")
done
[ ${#still[@]} -eq 0 ] || { echo "deps: still not installed after apt-get: ${still[*]}" >&2; exit 1; }
echo "deps: installed ${#missing[@]} packages"
