#!/usr/bin/env bash
# make install / make uninstall: sigtop in its own venv under $PREFIX/lib/sigtop, a launcher in
# $PREFIX/bin, the man page, the completions and the exporter's systemd unit.
#
#   PREFIX=/usr/local DESTDIR= BUILD=build scripts/install.sh install WHEEL
#   PREFIX=/usr/local DESTDIR= scripts/install.sh uninstall
#
# install writes a manifest of every file and directory it made ($PREFIX/lib/sigtop/MANIFEST);
# uninstall removes exactly those, so directories that were there before (man1, bin) stay.
set -euo pipefail
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BUILD=${BUILD:-build}
PY=/usr/bin/python3 # Debian's python: python3-bpfcc installs bcc there
LIB=$PREFIX/lib/sigtop
MANIFEST=$LIB/MANIFEST
# Root runs what lands here: nothing in it may be writable by others, whatever the caller's umask.
umask 022

case "$PREFIX" in /*) ;; *) echo "install: PREFIX must be absolute: $PREFIX" >&2; exit 2 ;; esac
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ] && [ ! -w "$PREFIX" ]; then
  echo "install: $PREFIX is root's: run as root (sudo make ${1:-install})" >&2
  exit 2
fi

made=() # what this install made, without DESTDIR, in the order made

mkdirs() { # each missing directory on the way to $1 (as an installed path)
  local dir=$1 missing=()
  while [ "$dir" != / ] && [ ! -d "$DESTDIR$dir" ]; do missing=("$dir" "${missing[@]}"); dir=$(dirname "$dir"); done
  for dir in "${missing[@]}"; do mkdir -m 755 "$DESTDIR$dir"; made+=("$dir/"); done
}

record() { # the manifest as far as made: an install that fails half-way is still removed by uninstall
  printf '%s\n' "${made[@]}" "$MANIFEST" >"$DESTDIR$MANIFEST"
  chmod 644 "$DESTDIR$MANIFEST"
}

put() { # put SOURCE TARGET MODE
  mkdirs "$(dirname "$2")"
  install -m "$3" "$1" "$DESTDIR$2"
  made+=("$2")
}

has_systemd() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

uninstall() { # uninstall [upgrade]: an upgrade keeps the exporter's unit enabled and running
  local manifest=$DESTDIR$MANIFEST entries=() entry i
  if [ ! -f "$manifest" ]; then
    echo "uninstall: no sigtop installed in $PREFIX (no $MANIFEST)"
    return 0
  fi
  if [ "${1:-}" != upgrade ] && has_systemd; then
    systemctl disable --now sigtop-exporter.service >/dev/null 2>&1 || true
  fi
  mapfile -t entries <"$manifest"
  rm -rf -- "$DESTDIR$LIB" # the venv is all ours, with what running it cached (__pycache__)
  # Newest first: files before the directories that hold them.
  for ((i = ${#entries[@]} - 1; i >= 0; i--)); do
    entry=${entries[i]}
    case "$entry" in
      "$LIB/" | "$LIB"/*) ;;
      */) rmdir "$DESTDIR$entry" 2>/dev/null || echo "uninstall: kept $entry (not empty: not only ours)" ;;
      *) rm -f -- "$DESTDIR$entry" ;;
    esac
  done
  echo "uninstall: removed sigtop from $PREFIX"
}

install_all() {
  local wheel=$1
  [ -f "$wheel" ] || { echo "install: no wheel $wheel (make install builds it)" >&2; exit 2; }
  for f in sigtop.1 completions/sigtop.bash completions/_sigtop completions/sigtop.fish sigtop-exporter.service; do
    [ -f "$BUILD/$f" ] || { echo "install: $BUILD/$f is missing (make install builds it)" >&2; exit 2; }
  done
  # An upgrade is a fresh install: no module of the old version may linger in the venv.
  local upgrade=0
  if [ -f "$DESTDIR$MANIFEST" ]; then
    uninstall upgrade >/dev/null
    upgrade=1
  elif [ -e "$DESTDIR$LIB" ]; then
    echo "install: $DESTDIR$LIB exists but make install did not make it (no MANIFEST): move it away first" >&2
    exit 2
  fi

  [ -z "$DESTDIR" ] || mkdir -p "$DESTDIR" # the staging root is the packager's, not in the manifest
  mkdirs "$LIB"
  # Its own venv, seeing Debian's bcc (python3-bpfcc), at the exact versions of the checkout's tests;
  # with the serve extra (textual-serve): every command the man page lists runs.
  "$PY" -m venv --system-site-packages "$DESTDIR$LIB"
  record
  "$DESTDIR$LIB/bin/python" -m pip install -q --disable-pip-version-check --no-compile \
    -c requirements/constraints.txt "$wheel[serve]" 2> >(grep -v 'is ignored: it is neither' >&2)
  if [ -n "$DESTDIR" ]; then
    # The venv's scripts and config name where they were made; they are to run from $LIB.
    grep -rlIF "$DESTDIR$LIB" "$DESTDIR$LIB/bin" "$DESTDIR$LIB/pyvenv.cfg" | xargs -r sed -i "s|$DESTDIR$LIB|$LIB|g"
  fi
  # Compiled now, as root: a run never writes into the tree (and tracebacks name the installed paths).
  "$DESTDIR$LIB/bin/python" -m compileall -q ${DESTDIR:+-s "$DESTDIR" -p /} "$DESTDIR$LIB/lib" >/dev/null

  local launcher
  launcher=$(mktemp)
  # -I: root's environment (PYTHONPATH, a sigtop/ in the working directory, user site) cannot change what runs.
  printf '#!/bin/sh\n# sigtop, installed by make install: its own venv in %s\nexec %s/bin/python -I -m sigtop "$@"\n' \
    "$LIB" "$LIB" >"$launcher"
  put "$launcher" "$PREFIX/bin/sigtop" 755
  rm -f "$launcher"
  put "$BUILD/sigtop.1" "$PREFIX/share/man/man1/sigtop.1" 644
  put "$BUILD/completions/sigtop.bash" "$PREFIX/share/bash-completion/completions/sigtop" 644
  put "$BUILD/completions/_sigtop" "$PREFIX/share/zsh/site-functions/_sigtop" 644
  put "$BUILD/completions/sigtop.fish" "$PREFIX/share/fish/vendor_completions.d/sigtop.fish" 644
  put "$BUILD/sigtop-exporter.service" "$PREFIX/lib/systemd/system/sigtop-exporter.service" 644
  record

  if has_systemd; then
    systemctl daemon-reload || true
    # A running exporter goes on with the new version; one not running stays stopped.
    [ "$upgrade" -eq 0 ] || systemctl try-restart sigtop-exporter.service || true
  fi
  local version # what was installed must run: a wheel missing a module fails here, not at the user's
  version=$("$DESTDIR$LIB/bin/python" -I -m sigtop --version) || { echo "install: the installed sigtop does not run (make uninstall removes it)" >&2; exit 1; }
  echo "install: $version in $DESTDIR$PREFIX (launcher $PREFIX/bin/sigtop, venv $LIB)"
}

case "${1:-}" in
  install) install_all "${2:?install: give the wheel}" ;;
  uninstall) uninstall ;;
  *) echo "usage: $0 install WHEEL | uninstall" >&2; exit 2 ;;
esac
