"""What a filter keeps of each batch, for the sinks that pass batches on rather than rows
(record, stream and the exporter).

The tables select their rows with `FlowFilter.matches`; so does this, on a batch's parts, with
the same ends (pids, names, signal, container labels) as the table each part folds into. A
part's container comes from the /proc records of this and earlier batches, as the tables get
it from the process registry. Live, the kernel has already applied -p and -s; what is left is
--container (and, over a recording, everything).
"""

from __future__ import annotations

import dataclasses

from sigtop.containers import container_of
from sigtop.filters import FlowFilter
from sigtop.lru import BoundedLRU
from sigtop.names import EventKind
from sigtop.wire import Batch, FlowDelta, ProcInfo, SignalEvent

MAX_PROCESSES = 50_000  # the /proc records remembered for their names and containers


class BatchSelection:
    def __init__(self, flow_filter: FlowFilter) -> None:
        self.filter = flow_filter
        self._procs: BoundedLRU[int, ProcInfo] = BoundedLRU(MAX_PROCESSES)

    def learn(self, batch: Batch) -> None:
        """The batch's /proc records: who each pid is, for this batch's parts and later ones'."""
        for info in batch.procs:
            self._procs.put(info.pid, info)
            if info.tgid and info.tgid != info.pid:
                self._procs.put(info.tgid, info)

    def _ends(self, pids: tuple[int, ...], comms: list[str], sig: int | list[int] | None, cgroups: list[str]) -> bool:
        known = [p for p in (self._procs.get(pid) for pid in pids if pid > 0) if p is not None]
        labels = [container_of(c).label for c in cgroups if c] + [container_of(p.cgroup).label for p in known]
        return self.filter.matches(pids, [*comms, *(p.comm for p in known)], sig, labels)

    def flow(self, f: FlowDelta) -> bool:
        key = f.key
        return self._ends((key.sender_pid, key.target_tgid or key.target_pid), [f.sender_comm, f.target_comm],
                          key.sig, [f.sender_cgroup])  # fmt: skip

    def event(self, e: SignalEvent) -> bool:
        if e.kind == EventKind.death:  # the dying process (the header's) and its parent
            return self._ends((e.sender_pid, e.target_tgid), [e.comm], e.sig, [])
        if e.kind in (EventKind.signalfd, EventKind.unmatched_sigreturn, EventKind.sigaction, EventKind.oom):
            return self._ends((e.sender_pid,), [e.comm], None, [])
        key = e.flow
        sender = key.sender_pid if key is not None else e.sender_pid
        return self._ends((sender, e.target_tgid or e.target_pid), [e.comm, e.target_comm], e.sig, [])

    def _process(self, pid: int, comm: str = "", sig: list[int] | None = None) -> bool:
        return self._ends((pid,), [comm], sig, [])

    def select(self, batch: Batch) -> Batch:
        """The batch as the filter sees it: its parts in scope; the kernel's own figures (losses,
        map fill) whole, as they are the trace's, not a part's."""
        self.learn(batch)
        if not self.filter:
            return batch
        if self.filter.states:
            raise ValueError("is: selects rows by their totals, not a batch's parts")
        one = self._process
        pending = batch.pending
        if pending is not None:
            pending = [p for p in pending if self._ends((p.key.sender_pid, p.key.target_tgid or p.key.target_pid),
                                                        [], p.key.sig, [])]  # fmt: skip
        return dataclasses.replace(
            batch,
            flows=[f for f in batch.flows if self.flow(f)],
            threads=[t for t in batch.threads if one(t.tgid, t.comm)],
            signalfds=[s for s in batch.signalfds if one(s.pid, s.comm, _signals(s.mask))],
            events=[e for e in batch.events if self.event(e)],
            pending=pending,
            dispositions=[d for d in batch.dispositions if one(d.pid)],
        )


def _signals(mask: int) -> list[int]:
    return [n for n in range(1, 65) if mask >> (n - 1) & 1]
