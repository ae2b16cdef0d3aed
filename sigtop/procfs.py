"""What /proc says about a process, read once when the collector first sees it.

Processes that signal each other are often short-lived, so the collector
resolves a pid as soon as it appears; the model only ever sees `ProcInfo`.
"""

from __future__ import annotations

import pwd
from pathlib import Path

from sigtop.records import ProcInfo

PROC = Path("/proc")
MAX_PARENTS = 16


def _status(pid: int) -> dict[str, str]:
    fields = {}
    try:
        text = (PROC / str(pid) / "status").read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def _user(uid_field: str) -> str:
    if not uid_field:
        return ""
    uid = int(uid_field.split(maxsplit=1)[0])
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_proc(pid: int) -> ProcInfo | None:
    """ProcInfo for a task id (a thread's id gives its process's tgid), or None if gone."""
    status = _status(pid)
    if not status:
        return None
    base = PROC / str(pid)
    try:
        raw = (base / "cmdline").read_bytes()
        cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    try:
        cgroup = (base / "cgroup").read_text(errors="replace").strip().splitlines()
        cgroup_path = cgroup[-1].split(":", 2)[-1] if cgroup else ""
    except OSError:
        cgroup_path = ""
    ppid = int(status.get("PPid", "0") or 0)
    parents: list[tuple[int, str]] = []
    parent = ppid
    while parent > 0 and len(parents) < MAX_PARENTS:
        pstatus = _status(parent)
        if not pstatus:
            break
        parents.append((parent, pstatus.get("Name", "")))
        parent = int(pstatus.get("PPid", "0") or 0)
    return ProcInfo(
        pid=pid,
        tgid=int(status.get("Tgid", pid) or pid),
        comm=status.get("Name", ""),
        cmdline=cmdline,
        user=_user(status.get("Uid", "")),
        ppid=ppid,
        parents=parents,
        cgroup=cgroup_path,
    )


def pidfd_target(pid: int, fd: int) -> int | None:
    """The pid a process's pidfd refers to (fdinfo's Pid:), None if unknown or exited."""
    try:
        text = (PROC / str(pid) / "fdinfo" / str(fd)).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pid:"):
            value = int(line.split()[1])
            return value if value > 0 else None
    return None
