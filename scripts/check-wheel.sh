#!/usr/bin/env bash
# CI: the wheel as users install it, both ways the README gives (as root: the checks trace the kernel).
#
#   1. a fresh `python3 -m venv --system-site-packages` (Debian's python3-bpfcc gives it bcc), pip install WHEEL;
#   2. `pipx install --system-site-packages 'WHEEL[serve]'`, with PIPX_HOME and PIPX_BIN_DIR in a temporary directory.
#
# Each then runs, from / (no checkout on the path): `sigtop --version` (the wheel's version),
# `sigtop doctor` (every check passes), `sigtop batch --duration 1 --json` (one JSON report). The venv
# has no extras: `sigtop serve` there must say how to get textual-serve in one line; the pipx one has
# the serve extra and serves a recording's page. Packages come at the versions of requirements/constraints.txt.
# Leaves nothing behind: everything is under one temporary directory, removed however the script ends.
# WHEEL=path checks that wheel instead of building one with make wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "check-wheel: run as root (sudo): sigtop doctor and batch trace the kernel" >&2; exit 2; }
command -v pipx >/dev/null || { echo "check-wheel: no pipx (scripts/setup.sh test installs Debian's)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/sigtop-check-wheel.XXXXXX)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "check-wheel: $*" >&2; exit 1; }

if [ -n "${WHEEL:-}" ]; then # one built elsewhere
  wheel=$(realpath "$WHEEL")
else
  make -s wheel BUILD="$tmp/build"
  wheels=("$tmp"/build/dist/sigtop-*.whl)
  [ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] || fail "make wheel made no single wheel: ${wheels[*]}"
  wheel=${wheels[0]}
fi
version=$(.venv/bin/python -c 'from sigtop import version; print(version())')

check() { # check NAME SIGTOP
  local name=$1 sigtop=$2 out
  out=$(cd / && "$sigtop" --version) || fail "$name: sigtop --version failed"
  [ "$out" = "sigtop $version" ] || fail "$name: sigtop --version said '$out', not 'sigtop $version'"
  (cd / && "$sigtop" doctor) >"$tmp/doctor.txt" 2>&1 || { cat "$tmp/doctor.txt" >&2; fail "$name: sigtop doctor failed"; }
  (cd / && "$sigtop" batch --duration 1 --json) >"$tmp/batch.json" 2>"$tmp/batch.err" \
    || { cat "$tmp/batch.err" >&2; fail "$name: sigtop batch --duration 1 --json failed"; }
  /usr/bin/python3 -c 'import json, sys; doc = json.load(open(sys.argv[1])); assert "total_signals" in doc, sorted(doc)' \
    "$tmp/batch.json" || fail "$name: sigtop batch printed no JSON report"
  echo "check-wheel: $name: --version, doctor and batch --json ran ($version)"
}

# 1. A venv with Debian's site packages, the wheel alone (no extras).
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check -c requirements/constraints.txt "$wheel" \
  2> >(grep -v 'is ignored: it is neither' >&2)
check venv "$tmp/venv/bin/sigtop"
if out=$(cd / && "$tmp/venv/bin/sigtop" serve "$ROOT/tests/data/recording.jsonl" 2>&1); then
  fail "venv: sigtop serve ran without textual-serve"
fi
[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && [[ "$out" == *"pip install 'sigtop[serve]'"* ]] \
  || fail "venv: sigtop serve without textual-serve said: $out"
echo "check-wheel: venv: sigtop serve without the serve extra says how to get it"

# 2. pipx, with the serve extra; its venvs and links in the temporary directory, not root's ~/.local.
export PIPX_HOME=$tmp/pipx PIPX_BIN_DIR=$tmp/pipx/bin PIPX_MAN_DIR=$tmp/pipx/man
pipx install --system-site-packages --pip-args="-c $ROOT/requirements/constraints.txt" "$wheel[serve]" \
  >"$tmp/pipx.txt" 2>&1 || { cat "$tmp/pipx.txt" >&2; fail "pipx install failed"; }
check pipx "$PIPX_BIN_DIR/sigtop"
port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd / && exec "$PIPX_BIN_DIR/sigtop" serve --listen "127.0.0.1:$port" "$ROOT/tests/data/recording.jsonl") \
  2>"$tmp/serve.err" &
server=$!
for _ in $(seq 100); do
  /usr/bin/python3 -c 'import sys, urllib.request; open(sys.argv[2], "wb").write(urllib.request.urlopen(sys.argv[1], timeout=5).read())' \
    "http://127.0.0.1:$port/" "$tmp/page.html" 2>/dev/null && break
  kill -0 "$server" 2>/dev/null || { cat "$tmp/serve.err" >&2; fail "pipx: sigtop serve ended"; }
  sleep 0.2
done
grep -q 'textual-terminal' "$tmp/page.html" 2>/dev/null || { cat "$tmp/serve.err" >&2; fail "pipx: sigtop serve served no page"; }
kill -TERM "$server"
wait "$server" || fail "pipx: sigtop serve did not end cleanly on SIGTERM"
server=""
echo "check-wheel: pipx: sigtop serve served the recording's page"
