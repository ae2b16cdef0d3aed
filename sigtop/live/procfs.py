"""What /proc says about a process, read once when the collector first sees it.

Processes that signal each other are often short-lived, so the collector
resolves a pid as soon as it appears; the model only ever sees `ProcInfo`.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterable
from pathlib import Path

from sigtop.live.clock import CLOCK_TICKS, DEFAULT, SourceClock
from sigtop.lru import BoundedLRU
from sigtop.wire import Batch, Disposition, ProcInfo

PROC = Path("/proc")
MAX_PARENTS = 16
PROC_REFRESH_S = 30.0
# A process chooses its argv (up to ~2 MB each): only this much is read and kept.
MAX_CMDLINE_BYTES = 4096
CMDLINE_CUT = " …[cut at {n} bytes]"
MAX_KNOWN_PROCS = 20_000  # as many as the model keeps
MAX_THREAD_MASKS = 64  # threads whose blocked masks are read per process
MAX_DISPOSITIONS = 500  # processes whose dispositions are read per batch


def _status(pid: int | str) -> dict[str, str]:
    fields = {}
    try:
        text = (PROC / str(pid) / "status").read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def effective_caps(pid: int | str = "self") -> int:
    """A process's effective capability set (CapEff); 0 where it cannot be read."""
    try:
        return int(_status(pid).get("CapEff", "0"), 16)
    except ValueError:
        return 0


def cgroup_paths(pid: int | str = "self") -> dict[str, str] | None:
    """/proc/PID/cgroup as {controllers: path}: "" is cgroup v2's, "memory" v1's memory
    controller's; None where it cannot be read."""
    try:
        text = (PROC / str(pid) / "cgroup").read_text()
        return dict(line.split(":", 2)[1:] for line in text.splitlines() if line.count(":") >= 2)
    except (OSError, ValueError):
        return None


def read_cmdline(pid: int) -> str:
    """A process's command line, at most MAX_CMDLINE_BYTES of it, saying where it was cut."""
    try:
        with (PROC / str(pid) / "cmdline").open("rb") as f:
            raw = f.read(MAX_CMDLINE_BYTES + 1)
    except OSError:
        return ""
    cut = len(raw) > MAX_CMDLINE_BYTES
    text = raw[:MAX_CMDLINE_BYTES].rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    return text + CMDLINE_CUT.format(n=MAX_CMDLINE_BYTES) if cut else text


def _real_uid(uid_field: str) -> int:
    first = uid_field.split(maxsplit=1)[:1]
    return int(first[0]) if first and first[0].isdigit() else -1


def _user(uid_field: str) -> str:
    if not uid_field:
        return ""
    uid = int(uid_field.split(maxsplit=1)[0])
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def start_ticks(pid: int) -> int | None:
    """When a task started, in clock ticks since boot (/proc/PID/stat field 22), None if gone."""
    try:
        with (PROC / str(pid) / "stat").open("rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_running(pid: int) -> bool:
    """Whether a process still runs: not gone, and not a zombie waiting for its parent to reap it."""
    try:
        with (PROC / str(pid) / "stat").open("rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def pending_masks(owner: int) -> tuple[int, int, int, int, bool] | None:
    """(SigPnd, ShdPnd, start in ns since boot, TracerPid, in a tracing stop) of a task id, None if
    it is gone. A traced task in its stop may hold a signal it took off its list (a
    signal-delivery-stop) that its tracer has yet to pass on or not."""
    ticks = start_ticks(owner)
    try:
        text = (PROC / str(owner) / "status").read_text(errors="replace")
    except OSError:
        return None
    own = shared = tracer = 0
    stopped = False
    for line in text.splitlines():
        if line.startswith("State:"):
            stopped = line[6:].strip().startswith("t")
        elif line.startswith("TracerPid:"):
            tracer = int(line[10:].strip() or 0)
        elif line.startswith("SigPnd:"):
            own = int(line[7:].strip(), 16)
        elif line.startswith("ShdPnd:"):
            shared = int(line[7:].strip(), 16)
            break
    started_ns = ticks * 1_000_000_000 // CLOCK_TICKS if ticks is not None else 0
    return own, shared, started_ns, tracer, stopped


def task_exists(tid: int) -> bool:
    return (PROC / str(tid)).exists()


def thread_ids(pid: int) -> set[int]:
    """A process's threads' ids (its own pid alone if /proc cannot say)."""
    try:
        return {pid, *(int(t) for t in os.listdir(PROC / str(pid) / "task"))}
    except (OSError, ValueError):
        return {pid}


def read_proc(pid: int, clock: SourceClock = DEFAULT) -> ProcInfo | None:
    """ProcInfo for a task id (a thread's id gives its process's tgid), or None if gone."""
    ticks = start_ticks(pid)
    status = _status(pid)
    if not status or ticks is None:
        return None
    base = PROC / str(pid)
    cmdline = read_cmdline(pid)
    try:
        cgroup_path = cgroup_of((base / "cgroup").read_text(errors="replace"))
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
        uid=_real_uid(status.get("Uid", "")),
        ppid=ppid,
        parents=parents,
        cgroup=cgroup_path,
        started=clock.of_start_ticks(ticks),
        start_ticks=ticks,
        nspid=[int(x) for x in status.get("NSpid", "").split() if x.isdigit()][:32],
    )


# On a host that mixes v1 and v2, where to look when the v2 path is the root:
# the hierarchies that name services and containers first.
V1_PREFERENCE = ("name=systemd", "memory", "pids", "cpu,cpuacct", "cpu", "cpuset")


def cgroup_of(text: str) -> str:
    """The cgroup path that says most about a process, from /proc/PID/cgroup.

    The v2 path where it is not the root; else (a host mixing v1 and v2,
    where v2 holds everything at /) the first v1 hierarchy that places the
    process somewhere, preferring those that name services and containers.
    """
    v2 = ""
    v1: dict[str, str] = {}
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            v2 = path
        elif path:
            v1[controllers] = path
    if v2 and v2 != "/":
        return v2
    ranked = sorted(v1.items(), key=lambda kv: V1_PREFERENCE.index(kv[0]) if kv[0] in V1_PREFERENCE else 99)
    return next((path for _, path in ranked if path != "/"), v2 or next(iter(v1.values()), ""))


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "ns" / "pid")
    except OSError:
        return None


def host_pid_in_namespace_of(sender: int, ns_pid: int) -> int | None:
    """The host pid of the process that is `ns_pid` in `sender`'s pid namespace, None if none is.

    A walk of /proc (a few ms on a busy host): only for the rare failed send
    or probe from inside a container, once per (sender, pid).
    """
    namespace = pid_namespace(sender)
    if namespace is None:
        return None
    for entry in os.scandir(PROC):
        if not entry.name.isdigit() or pid_namespace(int(entry.name)) != namespace:
            continue
        nspid = _status(int(entry.name)).get("NSpid", "").split()
        if nspid and nspid[-1] == str(ns_pid):
            return int(entry.name)
    return None


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


class ProcResolver:
    """Reads /proc for every process a batch names for the first time, not lately, or
    under the same pid but another start time (a new process that was given a reused pid)."""

    def __init__(self, clock: SourceClock = DEFAULT) -> None:
        self.clock = clock
        # pid -> (read at, start ticks), least recently wanted first
        self._known_procs: BoundedLRU[int, tuple[float, int]] = BoundedLRU(MAX_KNOWN_PROCS)  # forgotten: read again
        # (sender, fd) and (sender, pid) already resolved, the most recent kept.
        self._known_pidfds: BoundedLRU[tuple[int, int], None] = BoundedLRU(MAX_KNOWN_PROCS)
        self._known_ns_pids: BoundedLRU[tuple[int, int], None] = BoundedLRU(MAX_KNOWN_PROCS)

    def resolve(self, batch: Batch) -> list[ProcInfo]:
        wanted: set[int] = set()
        pidfds: list[tuple[int, int]] = []
        ns_pids: list[tuple[int, int]] = []
        for d in batch.flows:
            k = d.key
            if k.sender_pid:
                wanted.add(k.sender_pid)
            if k.ns_local:
                if k.target_pid > 0 and (k.sender_pid, k.target_pid) not in self._known_ns_pids:
                    ns_pids.append((k.sender_pid, k.target_pid))
            elif k.targets_pidfd():
                if (k.sender_pid, k.target_pid) not in self._known_pidfds:
                    pidfds.append((k.sender_pid, k.target_pid))
            elif k.target_pid > 0:
                wanted.add(k.target_pid)
            if k.target_tgid:
                wanted.add(k.target_tgid)
        wanted.update(t.tgid for t in batch.threads)
        wanted.update(s.pid for s in batch.signalfds)
        now = time.monotonic()
        procs = {}
        for pid in wanted:
            seen = self._known_procs.get(pid)
            ticks = start_ticks(pid)  # the identity check: one small read per pid per batch
            if seen is not None and now - seen[0] < PROC_REFRESH_S and ticks == seen[1]:
                self._known_procs.move_to_end(pid)
                continue
            info = read_proc(pid, self.clock)
            self._known_procs.put(pid, (now, ticks if ticks is not None else -1))
            if info is not None:
                procs[pid] = info
        for sender, fd in pidfds:
            self._known_pidfds.put((sender, fd), None)
            target = pidfd_target(sender, fd)
            if target is None:
                continue
            info = procs.get(sender) or read_proc(sender, self.clock)
            if info is not None:
                info.pidfds[fd] = target
                procs[sender] = info
        for sender, ns_pid in ns_pids:
            self._known_ns_pids.put((sender, ns_pid), None)
            host = host_pid_in_namespace_of(sender, ns_pid)
            info = procs.get(sender) or read_proc(sender, self.clock)
            if info is not None:
                if host is not None:
                    info.ns_pids[ns_pid] = host
                procs[sender] = info
            if host is not None and host not in procs:
                target = read_proc(host, self.clock)
                if target is not None:
                    procs[host] = target
        return list(procs.values())


def _masks(text: str) -> dict[str, int]:
    found = {}
    for line in text.splitlines():
        if line.startswith(("Sig", "ShdPnd")):
            name, _, value = line.partition(":")
            try:
                found[name] = int(value.strip(), 16)
            except ValueError:
                pass
    return found


def read_disposition(pid: int, clock: SourceClock = DEFAULT) -> Disposition | None:
    """How a process treats each signal now: SigCgt, SigIgn, pending, and each thread's SigBlk."""
    try:
        status = (PROC / str(pid) / "status").read_text(errors="replace")
        main = _masks(status)
        tids = sorted(int(t) for t in os.listdir(PROC / str(pid) / "task"))[:MAX_THREAD_MASKS]
    except (OSError, ValueError):
        return None
    state = next((line.split()[1:2] for line in status.splitlines() if line.startswith("State:")), [])
    threads = []
    pending = main.get("ShdPnd", 0)
    for tid in tids:
        try:
            masks = main if tid == pid else _masks((PROC / str(pid) / "task" / str(tid) / "status").read_text())
        except OSError:
            continue  # ended meanwhile
        threads.append((tid, masks.get("SigBlk", 0)))
        pending |= masks.get("SigPnd", 0)
    exited = state in (["Z"], ["X"])
    return Disposition(pid, main.get("SigCgt", 0), main.get("SigIgn", 0), pending, threads, clock.now(), exited)


def dispositions(batch: Batch, also: Iterable[int] = (), clock: SourceClock = DEFAULT) -> list[Disposition]:
    """The dispositions of the processes a batch shows as targets (of signals that moved, still
    pending), and of `also` (signalfd holders), at most MAX_DISPOSITIONS: kept current each batch."""
    wanted: dict[int, None] = dict.fromkeys(also)
    for p in batch.pending or ():
        wanted[p.key.target_tgid or p.key.target_pid] = None
    for s in batch.signalfds:
        wanted[s.pid] = None
    for d in batch.flows:
        k = d.key
        if k.target_pid > 0 and not k.ns_local and not k.targets_pidfd():
            wanted[k.target_tgid or k.target_pid] = None
    found = []
    for pid in list(wanted)[:MAX_DISPOSITIONS]:
        disposition = read_disposition(pid, clock)
        if disposition is not None:
            found.append(disposition)
    return found
