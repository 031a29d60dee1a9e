#!/usr/bin/env bash
# README command 1 the way a user runs it: the Debian packages, then a plain (not editable) install
# into a fresh venv inside a 0700 folder (as pyenv's Python lives under /root), then the main job in
# the process sandbox. Fails unless every reference program passes. .ci/run calls this.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=""
  for pkg in bubblewrap python3-numpy python3-pandas python3-sklearn; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $need
  fi
fi

home=$(mktemp -d "${TMPDIR:-/tmp}/mtpb-user.XXXXXX")   # mode 0700: the sandbox's uid cannot look inside
trap 'rm -rf "$home"' EXIT
python3 -m venv "$home/venv"
# from a copy, as from a fresh clone: a build/ left in the checkout by an earlier build cannot leak in
tar -C "$repo" --exclude=./.git --exclude=./build --exclude='*.egg-info' --exclude=./runs -cf - . | (mkdir "$home/src" && tar -C "$home/src" -xf -)
"$home/venv/bin/python" -m pip install -q "$home/src"
cd "$home"
"$home/venv/bin/mtpb" run --backend reference --sandbox process --out runs/demo | tee main_job.out
grep -q "^pass rate 100.00% over 115 problems, 575 programs" main_job.out || {
  echo "main_job: README command 1 did not pass every program" >&2
  exit 1
}
