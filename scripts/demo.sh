#!/usr/bin/env bash
# make demo: bofh's main job on a self-contained sandbox. Nothing outside
# a scratch directory is touched.
set -euo pipefail
BOFH=${BOFH:-$(cd "$(dirname "$0")/.." && pwd)/bin/bofh}
SB=$(mktemp -d /tmp/bofh-demo.XXXXXX)
export BOFH_STATE_DIR=$SB/state BOFH_SITE=/dev/null
ROOT=$SB/root
trap 'echo; echo "(sandbox kept in $SB)"' EXIT

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
tree() { (cd "$ROOT" && find . -mindepth 1 -printf '  %M %u %p|%y|%l\n' | sed 's/|f|$//; s/|d|$/\//; s/|l|\(.*\)$/ -> \1/' | sort -k3); }

mkdir -p "$ROOT/etc"
printf 'worker_processes 1;\n' > "$ROOT/etc/web.conf"
printf 'old\n' > "$ROOT/etc/legacy.conf"

cat > "$SB/web.yaml" <<YAML
name: web-config
steps:
  - id: site
    kind: dir.create
    with: {path: $ROOT/srv/www, parents: true, mode: "0755"}
  - id: index
    kind: file.write
    with: {path: $ROOT/srv/www/index.html, content: "<h1>hello</h1>\n"}
  - kind: file.write
    with: {path: $ROOT/etc/web.conf, content: "worker_processes 4;\nroot \${site.path};\n", mode: "0640"}
  - kind: symlink.create
    with: {path: $ROOT/srv/current, target: www}
  - kind: file.remove
    with: {path: $ROOT/etc/legacy.conf}
YAML
sed -i "s|root \\\${site.path}|root $ROOT/srv/www; # \${index.sha256}|" "$SB/web.yaml"

say "The sandbox: a small tree, and a 5-step recipe that changes it"
tree
show cat "$SB/web.yaml"

say "1. A recipe that fails part-way is rolled back"
echo "We break step 4 on purpose (it links inside etc/legacy.conf, a file), then apply."
cp "$SB/web.yaml" "$SB/broken.yaml"
sed -i "s|path: $ROOT/srv/current|path: $ROOT/etc/legacy.conf/current|" "$SB/broken.yaml"
set +e; show "$BOFH" apply "$SB/broken.yaml"; rc=$?; set -e
echo "exit code $rc: 1 means 'failed and rolled back'. Steps 3, 2, 1 were undone, newest first."
echo "The tree is exactly as before: same files, content, modes and mtimes."
tree

say "2. A run killed mid-way leaves a journal"
echo "BOFH_FAIL=3:after:kill makes bofh SIGKILL itself right after step 3 acts,"
echo "before it can record that step 3 is done: as a power cut would."
set +e; { BOFH_FAIL=3:after:kill "$BOFH" apply "$SB/web.yaml"; rc=$?; } 2>/dev/null; set -e
echo "exit code $rc (killed). The tree is half-changed:"
tree
show "$BOFH" tx list
ID=$("$BOFH" tx list -o json | sed -n 's/.*"id": "\(.*\)",/\1/p' | tail -1)
show "$BOFH" tx show "$ID"
echo "Step 3 is 'uncertain': its intent (and its undo data) was journaled, its result was not."

say "3. Roll it back from the journal alone"
show "$BOFH" tx rollback "$ID"
echo "bofh checked whether step 3 took effect, undid it, then steps 2 and 1:"
tree

say "4. Or resume: kill it again, then finish the job"
set +e; { BOFH_FAIL=4:before:kill "$BOFH" apply "$SB/web.yaml"; } 2>/dev/null; set -e
ID=$("$BOFH" tx list -o json | sed -n 's/.*"id": "\(.*\)",/\1/p' | tail -1)
show "$BOFH" tx resume "$ID"
echo "Done steps were skipped with their recorded results; the rest ran:"
tree
show "$BOFH" tx list

say "That is bofh's job: every change journaled before it happens, every failure undone."
echo "Next: 'bofh step list' for what a recipe can do, 'bofh --help', README.md."
