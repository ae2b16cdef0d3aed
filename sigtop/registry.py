"""The process registry: who each pid is (and was), what /proc said of it, how it treats signals.

A process is its pid and its start time: a later process given the same pid
is a new generation, and rows made for the earlier one keep the earlier
one's identity (`proc_of(pid, gen)`). Everything here arrives in batches
(what the collector read in /proc, or a recording) and is bounded.
"""

from __future__ import annotations

from sigtop.containers import container_of
from sigtop.lru import BoundedLRU
from sigtop.names import printable
from sigtop.wire import Batch, Disposition, ProcInfo

MAX_PROCS = 20_000
# What the registry may hold in command lines and cgroup paths, in all: each is capped
# where it is read (4 KiB); past this the least recently seen go first.
MAX_PROC_TEXT = 16 << 20
MAX_CMDLINE = 4096 + 64  # a recording may hold longer ones: cut here too
MAX_RETIRED = 5_000  # earlier owners of reused pids, kept for their rows' drill-downs
START_SLACK_S = 0.011  # start times are in 10 ms ticks (truncated): one tick, and a bit


def _text_weight(proc: ProcInfo) -> int:
    return len(proc.cmdline) + len(proc.cgroup)


class ProcessRegistry:
    """Processes by pid, their generations, cgroups by id, dispositions and their changes."""

    def __init__(self) -> None:
        self.procs: BoundedLRU[int, ProcInfo] = BoundedLRU(MAX_PROCS, weigh=_text_weight, budget=MAX_PROC_TEXT)
        self.generation: dict[int, int] = {}  # pid -> how many times it was seen reused
        self._retired: BoundedLRU[tuple[int, int], ProcInfo | None] = BoundedLRU(MAX_RETIRED)
        # pid -> when its current generation's first row began (to tell a later owner from it)
        self._rows_since: BoundedLRU[int, float] = BoundedLRU(MAX_PROCS)
        self.cgroup_paths: BoundedLRU[int, str] = BoundedLRU(MAX_PROCS)  # cgroup v2 id -> path (deaths)
        # How each target treats signals, as /proc last said (handled, ignored, blocked by which threads).
        self.dispositions: BoundedLRU[int, Disposition] = BoundedLRU(MAX_PROCS)
        # Dispositions set while sigtop ran: (pid, signal) -> (when, handler: 0 default, 1 ignore, else a handler).
        self.disposition_changes: BoundedLRU[tuple[int, int], tuple[float, int]] = BoundedLRU(MAX_PROCS)

    @property
    def proc_text(self) -> int:
        """Characters of cmdline and cgroup held, in all."""
        return self.procs.weight

    def apply(self, batch: Batch) -> list[tuple[int, int]]:
        """Take in what a batch says of processes; return the (pid, earlier generation) of pids reused."""
        reused = []
        for proc in batch.procs:
            earlier = self.remember(proc)
            if earlier is not None:
                reused.append((proc.pid, earlier))
        for cgroup_id, path in batch.cgroups.items():
            self.cgroup_paths.put(cgroup_id, printable(path[:MAX_CMDLINE]))
        for disposition in batch.dispositions:
            self.dispositions.put(disposition.pid, disposition)
        return reused

    def remember(self, proc: ProcInfo) -> int | None:
        """Keep what /proc (or a recording) said of a process, sanitised; the earlier generation if
        the pid now belongs to another process, else None."""
        # The sanitising choke point for what /proc (or a recording) said.
        if len(proc.cmdline) > MAX_CMDLINE:
            proc.cmdline = proc.cmdline[:MAX_CMDLINE] + f" …[cut at {MAX_CMDLINE} characters]"
        proc.comm, proc.cmdline, proc.user = printable(proc.comm), printable(proc.cmdline), printable(proc.user)
        proc.cgroup = printable(proc.cgroup[:MAX_CMDLINE])
        proc.parents = [(pid, printable(comm[:64])) for pid, comm in proc.parents[:32]]
        old = self.procs.get(proc.pid)
        earlier_rows = self._rows_since.get(proc.pid)
        reused = (old is not None and _another_process(old, proc)) or (
            # The owner before exited unread, but its rows say it was there first.
            old is None and proc.started and earlier_rows is not None and earlier_rows < proc.started - START_SLACK_S
        )
        earlier = None
        if reused:
            earlier = self.generation.get(proc.pid, 0)
            self._retired.put((proc.pid, earlier), old)
            self.generation[proc.pid] = earlier + 1
            self._rows_since.discard(proc.pid)
        self.procs.put(proc.pid, proc)
        return earlier

    def first_row(self, pid: int, ts: float) -> None:
        """A row for `pid` began at `ts` (unless one of its current generation already did)."""
        if pid > 0 and ts and pid not in self._rows_since:
            self._rows_since.put(pid, ts)

    def gen(self, pid: int) -> int:
        return self.generation.get(pid, 0)

    def proc_of(self, pid: int, gen: int = 0) -> ProcInfo | None:
        """What /proc said about that pid's process of that generation (an earlier owner's, for an old row)."""
        if gen == self.generation.get(pid, 0):
            return self.procs.get(pid)
        return self._retired.get((pid, gen))

    def process_of(self, tid: int) -> int:
        """The process (tgid) of a task id, as far as /proc told the collector."""
        info = self.procs.get(tid)
        return info.tgid if info and info.tgid else tid

    def fresh_comm(self, pid: int, kernel_comm: str, flow_created: float) -> str:
        """The kernel's comm for a flow, unless the flow predates the pid's current process
        (the kernel keeps the comm a flow was created with, maybe by an earlier owner of the pid)."""
        info = self.procs.get(pid)
        if info is not None and info.started and flow_created and flow_created < info.started - START_SLACK_S:
            return info.comm
        return printable(kernel_comm)

    def container(self, pid: int) -> str:
        """The container or service label of a process as /proc last said ('' on the host or unknown)."""
        info = self.procs.get(pid)
        return container_of(info.cgroup).label if info else ""

    def set_disposition(self, pid: int, sig: int, ts: float, handler: int) -> None:
        self.disposition_changes.put((pid, sig), (ts, handler))


def _another_process(old: ProcInfo, new: ProcInfo) -> bool:
    """Two reads of one pid name two processes: their start ticks differ (exact); from a recording
    that kept only wall-clock start times, those differ by more than their rounding."""
    if old.start_ticks and new.start_ticks:
        return old.start_ticks != new.start_ticks
    return bool(old.started and new.started and abs(old.started - new.started) > START_SLACK_S)
