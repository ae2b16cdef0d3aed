"""NDJSON for log pipelines: one JSON object per signal event, with both ends' identity.

`sigtop stream` writes a line per detail event (a generated signal, a failed
send or probe) as batches arrive, flushed once per batch, for jq, Loki,
Vector or Elasticsearch. Identity (comm, cmdline, user, cgroup, start time,
namespace pids, container or service) comes from what the source resolved in /proc, sanitised like
everything else sigtop shows. A reader that goes away (broken pipe) ends the
stream cleanly.
"""

from __future__ import annotations

import json
from typing import IO, Any

from sigtop.containers import container_of
from sigtop.filters import FlowFilter
from sigtop.lru import BoundedLRU
from sigtop.names import EventKind, Result, errno_name, printable, si_code_name, signame, syscall_name
from sigtop.wire import Batch, ProcInfo, SignalEvent

MAX_IDENTITIES = 20_000  # processes remembered for their identity (least recently seen go first)
FLOW_EVENTS = (int(EventKind.generate), int(EventKind.send_done))


class EventStream:
    """Turns batches into NDJSON lines on `out`."""

    def __init__(self, out: IO[str], flow_filter: FlowFilter | None = None) -> None:
        self.out = out
        # Over a recording, what the kernel filters live (-p, -s) is applied here, as everywhere.
        self.flow_filter = flow_filter or None
        self.lines = 0
        self._procs: BoundedLRU[int, ProcInfo] = BoundedLRU(MAX_IDENTITIES)

    def _remember(self, proc: ProcInfo) -> None:
        self._procs.put(proc.pid, proc)

    def identity(self, pid: int, tid: int = 0, comm: str = "") -> dict[str, Any] | None:
        """One end of a signal: pid and what /proc said of it (None for the kernel)."""
        if pid <= 0:
            return None
        info = self._procs.get(pid)
        who: dict[str, Any] = {"pid": pid}
        if tid and tid != pid:
            who["tid"] = tid
        if info is None:
            if comm:
                who["comm"] = printable(comm)
            return who
        who.update(
            comm=printable(info.comm or comm),
            cmdline=printable(info.cmdline),
            user=printable(info.user),
            cgroup=printable(info.cgroup),
            container=container_of(info.cgroup).label or None,
            started=round(info.started, 2) if info.started else None,
        )
        if len(info.nspid) > 1:
            who["nspid"] = info.nspid
        return who

    def event_json(self, e: SignalEvent) -> dict[str, Any]:
        failed = e.kind == EventKind.send_done and e.ret < 0
        if e.kind == EventKind.send_done:
            outcome = f"failed {errno_name(-e.ret)}" if failed else "probe"
        else:
            outcome = Result(e.result).name if e.result in Result._value2member_map_ else str(e.result)
        doc: dict[str, Any] = {
            "ts": round(e.ts, 6),
            "signal": e.sig,
            "signame": signame(e.sig),
            "syscall": syscall_name(e.syscall),
            "si_code": si_code_name(e.sig, e.code),
            "result": outcome,
            "sender": self.identity(e.sender_pid, e.sender_tid, e.comm) if e.syscall else None,
            "target": self.identity(e.target_tgid or e.target_pid, e.target_pid),
        }
        if e.has_info:
            doc["si_value"] = e.info_value
        if e.spoofed:
            doc["spoofed"] = {"claimed_si_pid": e.info_pid, "claimed_si_uid": e.info_uid}
        if e.ns_local:
            doc["target_in_sender_namespace"] = True
        return doc

    def _wanted(self, e: SignalEvent) -> bool:
        if self.flow_filter is None:
            return True
        target = e.target_tgid or e.target_pid
        ends = [self._procs.get(p) for p in (e.sender_pid, target)]
        return self.flow_filter.matches(
            (e.sender_pid, target),
            [e.comm, *(p.comm for p in ends if p)],
            e.sig,
            [container_of(p.cgroup).label for p in ends if p],
        )

    def write(self, batch: Batch) -> None:
        """Every flow event of a batch, one line each; flushed once (BrokenPipeError if the reader left)."""
        for proc in batch.procs:
            self._remember(proc)
        lines = [
            json.dumps(self.event_json(e), separators=(",", ":"))
            for e in batch.events
            if e.kind in FLOW_EVENTS and self._wanted(e)
        ]
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()
            self.lines += len(lines)
