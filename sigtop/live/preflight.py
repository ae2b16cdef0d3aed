"""Checks before tracing: privileges, tracefs and its tracepoints, kernel headers, BCC.

Each raises (or reports) one line a user can act on; `sigtop doctor` runs
them one by one, attach runs them in order before compiling anything.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from typing import Any

from sigtop.contract import SourceError
from sigtop.live import procfs
from sigtop.names import SEND_SYSCALLS

TRACEFS_PATHS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
CAP_PERFMON, CAP_BPF = 38, 39

REQUIRED_TRACEPOINTS = (
    "signal/signal_generate",
    "signal/signal_deliver",
    *(f"syscalls/sys_{d}_{s.name}" for s in SEND_SYSCALLS for d in ("enter", "exit")),
    "syscalls/sys_enter_rt_sigreturn",
    "syscalls/sys_enter_rt_sigaction",
    "syscalls/sys_exit_rt_sigtimedwait",
    "syscalls/sys_enter_exit",
    "syscalls/sys_enter_exit_group",
    "task/task_newtask",
    "sched/sched_process_exec",
    "sched/sched_process_exit",
    "sched/sched_process_free",
)


class CollectorError(SourceError):
    """A failure to start (or go on) tracing, with a one-line message for the user."""


def check_privileges() -> None:
    if os.geteuid() == 0:
        return
    caps = procfs.effective_caps()
    if not (caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1):
        raise CollectorError("sigtop needs root (or CAP_BPF and CAP_PERFMON) to trace: run it with sudo")


def tracefs_root() -> Path | None:
    for path in TRACEFS_PATHS:
        try:
            if (path / "events" / "signal").is_dir():
                return path
        except OSError:  # not ours to read (an unprivileged doctor)
            continue
    return None


def ensure_tracefs() -> Path:
    """Find tracefs, mounting it where the machine has not (as root may)."""
    root = tracefs_root()
    if root is None and os.geteuid() == 0:
        subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", str(TRACEFS_PATHS[0])],
            capture_output=True,
            check=False,
        )
        root = tracefs_root()
    if root is None:
        raise CollectorError(
            "tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing (sigtop doctor checks)"
        )
    return root


def missing_tracepoints(root: Path) -> list[str]:
    return [tp for tp in REQUIRED_TRACEPOINTS if not (root / "events" / tp).is_dir()]


def kernel_headers_dir() -> Path | None:
    build = Path("/lib/modules") / os.uname().release / "build"
    return build if (build / "include").is_dir() else None


def has_kernel_headers() -> bool:
    return kernel_headers_dir() is not None or Path("/sys/kernel/kheaders.tar.xz").exists()


def has_btf(vmlinux: str = "/sys/kernel/btf/vmlinux") -> bool:
    return Path(vmlinux).exists()


BCC_MISSING = (
    "BCC's Python module is missing: install Debian's python3-bpfcc (make setup);"
    " the PyPI package 'bcc' is an unrelated project"
)


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError:
        raise CollectorError(BCC_MISSING) from None
    return bcc


def check_bcc() -> None:
    """That BCC is there, without loading it (and LLVM with it) into this process."""
    if importlib.util.find_spec("bcc") is None:
        raise CollectorError(BCC_MISSING)


# What compiling takes at its peak (the compiling child: about 150 MB RSS), with room.
COMPILE_PEAK_BYTES = 200 << 20


def memory_headroom(cgroup_root: Path = Path("/sys/fs/cgroup")) -> tuple[int, str] | None:
    """How much more memory this process's cgroup (or the tightest of its ancestors) allows, and
    which cgroup that is; None when no limit applies. cgroup v2 (memory.max), or v1's memory
    controller (memory.limit_in_bytes) where that is what the machine mounts."""
    entries = procfs.cgroup_paths()
    if entries is None:
        return None
    if "memory" in entries and (cgroup_root / "memory").is_dir():  # v1
        root, path, limit_file, usage_file = (
            cgroup_root / "memory",
            entries["memory"],
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
        )
    elif "" in entries:
        root, path, limit_file, usage_file = cgroup_root, entries[""], "memory.max", "memory.current"
    else:
        return None
    tightest: tuple[int, str] | None = None
    while True:
        where = root / path.lstrip("/")
        try:
            limit = int((where / limit_file).read_text().strip())  # "max" (v2): no limit, ValueError
            left = max(0, limit - int((where / usage_file).read_text()))
        except (OSError, ValueError):
            left = None
        if left is not None and left < 1 << 50 and (tightest is None or left < tightest[0]):  # v1 says 2^63 for none
            tightest = (left, path or "/")
        if path in ("", "/"):
            return tightest
        path = path.rsplit("/", 1)[0]


def check_memory() -> None:
    """Refuse to start a compile the cgroup's limit would OOM-kill with nothing said."""
    headroom = memory_headroom()
    if headroom is not None and headroom[0] < COMPILE_PEAK_BYTES:
        left, cgroup = headroom
        raise CollectorError(
            f"cgroup {cgroup} allows {left >> 20} MB more memory; compiling the BPF program needs "
            f"about {COMPILE_PEAK_BYTES >> 20} MB, once per kernel and configuration: raise its memory limit"
            " (systemd: MemoryMax=), or start sigtop once outside it (later starts only load the program)"
        )


def check_all() -> Path:
    """Every check loading and attaching needs, in order; tracefs's root when all pass."""
    check_privileges()
    root = ensure_tracefs()
    missing = missing_tracepoints(root)
    if missing:
        raise CollectorError(f"this kernel lacks tracepoint {missing[0]} (and {len(missing) - 1} more)")
    return root


def check_compiling() -> None:
    """What compiling needs besides (only the first start on a kernel and configuration compiles)."""
    check_memory()
    check_bcc()
    if not has_kernel_headers():
        raise CollectorError(
            f"no kernel headers for {os.uname().release}: run `make setup` "
            "(it links Debian's nearest headers) or install linux-headers"
        )


def check_light(vmlinux: str = "/sys/kernel/btf/vmlinux") -> None:
    """--light reads a send's syscall and arguments from the sender's saved registers: an
    x86_64 layout (its syscall numbers and user code segment), reached through BTF."""
    if os.uname().machine != "x86_64":
        raise CollectorError(f"--light reads x86_64 registers; this machine is {os.uname().machine}: run without it")
    if not has_btf(vmlinux):
        raise CollectorError(f"--light needs the kernel's BTF ({vmlinux} is missing): run without it")
