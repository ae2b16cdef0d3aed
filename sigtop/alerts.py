"""Alerts: what looks like an attack, from the batches: SROP's first step, a forged siginfo, probing.

Pure: batches (and what /proc said of the processes) in, `Alert`s out. The
model keeps a bounded list for the view and the JSON; the exporter counts
them by kind. An alert repeats at most once a minute per kind and process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sigtop.lru import BoundedLRU
from sigtop.names import Result, errno_name, printable, signame
from sigtop.wire import Batch, ProcInfo

PROBING_FAILURES = 20  # failed sends (EPERM, ESRCH) from one process in one interval
REPEAT_S = 60.0
MAX_QUIET = 10_000


@dataclass(frozen=True)
class Alert:
    kind: str  # srop, spoofed, probing
    ts: float
    pid: int
    tid: int
    comm: str
    detail: str
    cgroup: str = ""
    parents: tuple[tuple[int, str], ...] = field(default_factory=tuple)


class AlertDetector:
    """Turns batches into alerts; `counts` by kind only grows (for the exporter)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._quiet: BoundedLRU[tuple[str, int], float] = BoundedLRU(MAX_QUIET)  # (kind, pid) -> last alert ts

    def _raise(self, kind: str, ts: float, pid: int, tid: int, comm: str, detail: str, procs: dict) -> Alert | None:
        last = self._quiet.get((kind, pid))
        if last is not None and ts - last < REPEAT_S:
            return None
        self._quiet.put((kind, pid), ts)
        self.counts[kind] += 1
        info: ProcInfo | None = procs.get(pid)
        return Alert(
            kind,
            ts,
            pid,
            tid,
            printable(comm or (info.comm if info else "")),
            detail,
            printable(info.cgroup) if info else "",
            tuple((p, printable(c)) for p, c in info.parents) if info else (),
        )

    def scan(self, batch: Batch, procs: dict[int, ProcInfo]) -> list[Alert]:
        known = {**procs, **{p.pid: p for p in batch.procs}}
        found: list[Alert | None] = []
        for t in batch.threads:
            if t.unmatched:
                detail = f"{t.unmatched} rt_sigreturn with no handler frame outstanding (SROP?)"
                found.append(self._raise("srop", batch.ts, t.tgid, t.tid, t.comm, detail, known))
        failures: Counter[int] = Counter()
        errnos: dict[int, Counter[str]] = {}
        for d in batch.flows:
            k = d.key
            if k.spoofed and d.count and k.result != Result.failed:
                claimed = f" (claims si_pid {d.claimed[0]}, si_uid {d.claimed[1]})" if d.claimed else ""
                detail = f"forged siginfo: {d.count} x {signame(k.sig)} to {k.target_tgid or k.target_pid}{claimed}"
                found.append(self._raise("spoofed", batch.ts, k.sender_pid, 0, d.sender_comm, detail, known))
            if k.result == Result.failed and k.err in (1, 3) and k.sender_pid:  # EPERM, ESRCH
                failures[k.sender_pid] += d.count
                errnos.setdefault(k.sender_pid, Counter())[errno_name(k.err)] += d.count
        for pid, n in failures.items():
            if n >= PROBING_FAILURES:
                kinds = ", ".join(f"{e} {c}" for e, c in errnos[pid].most_common())
                found.append(
                    self._raise("probing", batch.ts, pid, 0, "", f"{n} failed sends in one interval ({kinds})", known)
                )
        return [a for a in found if a is not None]
