#!/usr/bin/env bash
# make run: start sigtop from this checkout's .venv, as root. Under sudo that
# runs this tree's code as root; say so, and refuse where others could have
# changed it (a group- or world-writable file or directory in the tree).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
  exec .venv/bin/sigtop "$@"
fi
writable=$(find . -path ./.git -prune -o \( -perm -g+w -o -perm -o+w \) ! -type l -print -quit 2>/dev/null || true)
if [ -n "$writable" ]; then
  echo "make run: refusing to run this tree's code as root: $writable is writable by other users" >&2
  echo "make run: fix its permissions (chmod go-w), or install sigtop system-wide as root" >&2
  exit 2
fi
echo "make run: running $(pwd)/.venv/bin/sigtop as root with sudo: code in this tree (writable by $(id -un)) runs as root" >&2
exec sudo .venv/bin/sigtop "$@"
