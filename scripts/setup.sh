#!/usr/bin/env bash
# Install what sigtop needs, only what is missing: Debian's BCC, kernel
# headers BCC can compile against, tracefs, and a venv that sees Debian's
# bcc module. Safe to run again; prints what it did.
#
#   scripts/setup.sh run    what running sigtop needs, sigtop serve's textual-serve too (make run)
#   scripts/setup.sh build  that, and the man page and completion generators (make man, make install)
#   scripts/setup.sh test   all that, and the test tools, Chromium and pipx among them (make test, make setup)
#
# Python packages come at the exact versions of requirements/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-test}
case "$MODE" in run|build|test) ;; *) echo "setup: usage: $0 [run|build|test]" >&2; exit 2 ;; esac

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PY=/usr/bin/python3   # Debian's python: python3-bpfcc installs its module there
KREL=$(uname -r)
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. BCC from Debian (the PyPI package named bcc is an unrelated project).
if ! $PY -c 'import bcc' 2>/dev/null || ! $PY -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup: installing Debian's python3-bpfcc and python3-venv"
  apt_install python3-bpfcc python3-venv
fi

# 2. Kernel headers. BCC compiles at run time against /lib/modules/$KREL/build.
#    Where the running kernel has none, Debian's nearest serve: sigtop's BPF
#    uses only helpers and tracepoint args (and BTF offsets), no kernel structs.
if [ ! -d "/lib/modules/$KREL/build/include" ] && [ ! -e /sys/kernel/kheaders.tar.xz ]; then
  if ! apt_install "linux-headers-$KREL" 2>/dev/null; then
    [ "$apt_updated" -eq 1 ] || { $SUDO apt-get update -qq; apt_updated=1; }
    nearest=$(apt-cache search --names-only '^linux-headers-[0-9][0-9.]*[-+][^ ]*-amd64$' \
              | awk '{print $1}' | grep -v -e '-rt-' -e '-cloud-' | sort -V | tail -n 1)
    [ -n "$nearest" ] || { echo "setup: no linux-headers package found" >&2; exit 1; }
    echo "setup: no headers for $KREL; installing Debian's nearest, $nearest"
    apt_install "$nearest"
    ver=${nearest#linux-headers-}
    common=/usr/src/linux-headers-${ver%-amd64}-common
    $SUDO mkdir -p "/lib/modules/$KREL"
    $SUDO ln -sfn "/usr/src/$nearest" "/lib/modules/$KREL/build"
    [ -d "$common" ] && $SUDO ln -sfn "$common" "/lib/modules/$KREL/source"
    echo "setup: linked /lib/modules/$KREL/build -> /usr/src/$nearest (nearest headers, say so in bug reports)"
  fi
fi

# 2a. The tests compile small C helpers and check the kernel ABI with gcc.
if [ "$MODE" = test ] && ! command -v gcc >/dev/null; then
  echo "setup: installing gcc (the tests' C helpers and the ABI check)"
  apt_install gcc libc6-dev
fi

# 2b. The tests run a real Prometheus (and promtool) on loopback: Debian's.
#     On a machine with systemd Debian starts its service: stop and disable it.
if [ "$MODE" = test ] && ! command -v prometheus >/dev/null; then
  echo "setup: installing Debian's prometheus (for the exporter's tests; its service is left off)"
  apt_install prometheus
  if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
fi

# 2c. The install test reads the man page with man and loads each completion in its shell.
if [ "$MODE" = test ] && { ! command -v man >/dev/null || ! command -v zsh >/dev/null || ! command -v fish >/dev/null \
    || [ ! -f /usr/share/bash-completion/bash_completion ]; }; then
  echo "setup: installing man-db, bash-completion, zsh and fish (the install test checks the man page and completions)"
  apt_install man-db bash-completion zsh fish
fi

# 2d. The browser test drives Debian's headless Chromium; the wheel check installs with pipx.
if [ "$MODE" = test ] && { ! command -v chromium >/dev/null || ! command -v pipx >/dev/null; }; then
  echo "setup: installing Debian's chromium and pipx (the browser test of sigtop serve, the wheel check)"
  apt_install chromium pipx
fi

# 2e. One UI test drives the app in a real terminal: tmux's.
if [ "$MODE" = test ] && ! command -v tmux >/dev/null; then
  echo "setup: installing tmux (a UI test runs the app in a real terminal)"
  apt_install tmux
fi

# 2f. The container runtime test stops a real container: Debian's podman with runc (crun
#     refuses this VM's hybrid cgroups), from an image of busybox-static's binary (no registry).
if [ "$MODE" = test ] && { ! command -v podman >/dev/null || ! command -v runc >/dev/null \
    || ! dpkg -s busybox-static >/dev/null 2>&1; }; then
  echo "setup: installing podman, runc and busybox-static (a test stops a real container)"
  apt_install podman runc busybox-static
fi

# 3. tracefs, where the machine has not mounted it.
if [ ! -d /sys/kernel/tracing/events/signal ] && [ ! -d /sys/kernel/debug/tracing/events/signal ]; then
  echo "setup: mounting tracefs on /sys/kernel/tracing"
  $SUDO mount -t tracefs tracefs /sys/kernel/tracing
fi

# 4. The venv: Debian's python, seeing Debian's bcc, with sigtop installed editable.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import bcc' 2>/dev/null; then
  echo "setup: creating .venv (system site packages, for Debian's bcc)"
  rm -rf .venv
  $PY -m venv --system-site-packages .venv
fi
marker=".venv/.installed-$MODE"
if [ ! -f "$marker" ] || [ pyproject.toml -nt "$marker" ] || [ requirements/constraints.txt -nt "$marker" ]; then
  case "$MODE" in run) target='.[serve]' ;; build) target='.[build,serve]' ;; test) target='.[build,serve,test]' ;; esac
  echo "setup: installing $target into .venv (pinned versions)"
  .venv/bin/pip install -q --disable-pip-version-check -c requirements/constraints.txt -e "$target" \
    2> >(grep -v 'is ignored: it is neither' >&2)
  touch "$marker"
  # What a mode installs covers the modes below it.
  case "$MODE" in test) touch .venv/.installed-build .venv/.installed-run ;; build) touch .venv/.installed-run ;; esac
fi
exit 0
