"""Compiled programs kept between runs: the second start on a kernel skips the compile.

A compiled program is valid for exactly one (program source, compile flags,
kernel) triple; its file is named by a hash of the three, so a new sigtop,
another configuration or another kernel compiles afresh and nothing is ever
invalidated by hand. The verifier checks a cached program at every load as
it checks a fresh one, and a program that no longer loads is dropped and
compiled again.

The directory is root's alone (0700): a program loaded into the kernel is
only ever read from a directory and files this user owns and no one else
can write. At most KEEP programs are kept, the least recently used go.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from sigtop.live import objects

DEFAULT_DIR = "/var/cache/sigtop"
KEEP = 16
MAX_BYTES = 16 << 20  # a compiled program is about 300 KB: anything near this is not one


def directory() -> Path | None:
    """Where compiled programs are kept (SIGTOP_CACHE_DIR; empty: nowhere)."""
    where = os.environ.get("SIGTOP_CACHE_DIR", DEFAULT_DIR)
    return Path(where) if where else None


def kernel_identity() -> str:
    """What a compiled program depends on in the running kernel: its release, build and BTF."""
    uname = os.uname()
    try:
        btf = os.stat("/sys/kernel/btf/vmlinux")
        btf_id = f"{btf.st_size}"
    except OSError:
        btf_id = "none"
    return f"{uname.release} {uname.version} {uname.machine} btf:{btf_id}"


def key(source: str, cflags: list[str]) -> str:
    digest = hashlib.sha256()
    for part in (f"format {objects.FORMAT}", kernel_identity(), source, *cflags):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _private(st: os.stat_result, kind: int) -> bool:
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def get(name: str) -> dict[str, Any] | None:
    """The compiled program kept under `name`, or None (none kept, or not one this user alone could have written)."""
    where = directory()
    if where is None:
        return None
    try:
        if not _private(os.stat(where, follow_symlinks=False), stat.S_IFDIR):
            return None
        fd = os.open(where / f"{name}.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _private(st, stat.S_IFREG) or st.st_size > MAX_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            program = json.loads(f.read())
        os.utime(fd)  # recently used: pruned last
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return program if isinstance(program, dict) and program.get("format") == objects.FORMAT else None


def put(name: str, program: dict[str, Any]) -> None:
    """Keep a compiled program (whole or not at all: written aside, then renamed). Best effort:
    a read-only or full file system only means the next start compiles again."""
    where = directory()
    if where is None:
        return
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(os.stat(where, follow_symlinks=False), stat.S_IFDIR):
            return
        fd, temp = tempfile.mkstemp(dir=where, prefix=".compiling-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(program, f)
            os.replace(temp, where / f"{name}.json")
        except BaseException:
            os.unlink(temp)
            raise
        _prune(where)
    except OSError:
        pass


def drop(name: str) -> None:
    where = directory()
    if where is not None:
        try:
            (where / f"{name}.json").unlink()
        except OSError:
            pass


def _prune(where: Path) -> None:
    kept = sorted(where.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[KEEP:]:
        old.unlink(missing_ok=True)
