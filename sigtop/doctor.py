"""`sigtop doctor`: check every prerequisite of live tracing, and say how to fix each failure."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from sigtop import version
from sigtop.live import preflight

Check = tuple[str, Callable[[], str | None], str]


def _root() -> str | None:
    try:
        preflight.check_privileges()
    except preflight.CollectorError as exc:
        return str(exc)
    return None


def _bpf() -> str | None:
    if not Path("/sys/fs/bpf").exists() and not Path("/proc/sys/kernel/unprivileged_bpf_disabled").exists():
        return "this kernel has no BPF syscall"
    if not preflight.has_btf():
        return "no BTF (/sys/kernel/btf/vmlinux): fine, in-flight syscalls go to an LRU hash instead of task storage"
    return None


def _tracefs() -> str | None:
    root = preflight.tracefs_root()
    if root is None:
        unreadable = [p for p in preflight.TRACEFS_PATHS if p.exists() and not os.access(p, os.R_OK | os.X_OK)]
        if unreadable:
            return f"{unreadable[0]} is not readable by this user (tracefs is root's: run as root)"
        return "tracefs is not mounted"
    missing = preflight.missing_tracepoints(root)
    if missing:
        return f"missing tracepoints: {', '.join(missing)}"
    return None


def _headers() -> str | None:
    build = preflight.kernel_headers_dir()
    if build is None:
        return f"no headers at /lib/modules/{os.uname().release}/build"
    target = build.resolve()
    if os.uname().release not in str(target):
        return f"ok: {build} -> {target} (nearest Debian headers; fine for tracepoint-only BPF)"
    return None


def _bcc() -> str | None:
    try:
        preflight.import_bcc()
    except preflight.CollectorError as exc:
        return str(exc)
    return None


def _memory() -> str | None:
    try:
        preflight.check_memory()
    except preflight.CollectorError as exc:
        return str(exc)
    headroom = preflight.memory_headroom()
    if headroom is None:
        return "ok: no cgroup memory limit"
    return f"ok: cgroup {headroom[1]} allows {headroom[0] >> 20} MB more"


def _compiled() -> str | None:
    from sigtop.live import cache

    where = cache.directory()
    if where is None:
        return "ok: none kept (SIGTOP_CACHE_DIR is empty): every start compiles, about a second"
    try:
        kept = len(list(where.glob("*.json")))
    except OSError as exc:
        return f"ok: {where} cannot be read ({exc.strerror}): every start compiles"
    if not kept:
        return f"ok: none kept yet in {where}: the first start of each configuration compiles, later ones load it"
    return f"ok: {kept} kept in {where}: a configuration traced before loads in tens of ms"


CHECKS: list[Check] = [
    ("root or CAP_BPF+CAP_PERFMON", _root, "run as root: sudo sigtop"),
    ("BPF", _bpf, "a kernel with CONFIG_BPF_SYSCALL=y"),
    ("tracepoints", _tracefs, "mount -t tracefs tracefs /sys/kernel/tracing (make setup does it)"),
    ("kernel headers", _headers, "make setup (installs Debian's nearest linux-headers and links them)"),
    ("memory for a compile", _memory, "raise the cgroup's MemoryMax (systemd: MemoryMax= in the unit)"),
    ("bcc (python3-bpfcc)", _bcc, "apt-get install python3-bpfcc, and use a venv with --system-site-packages"),
    ("compiled programs", _compiled, ""),
]


def run_doctor() -> int:
    print(f"sigtop {version()}, kernel {os.uname().release}")
    failed = 0
    for name, check, fix in CHECKS:
        problem = check()
        if problem is None:
            print(f"ok    {name}")
        elif problem.startswith(("ok: ", "no BTF")):
            print(f"ok    {name}: {problem.removeprefix('ok: ')}")
        else:
            failed += 1
            print(f"FAIL  {name}: {problem}\n      fix: {fix}")
    print("all checks passed: sigtop can trace" if not failed else f"{failed} check(s) failed", file=sys.stderr)
    return 1 if failed else 0
