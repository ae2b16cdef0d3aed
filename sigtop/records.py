"""The records that flow from a source (live BPF or a recording) to the model.

Plain data, no behaviour beyond (de)serialising and merging: these are what
a recording stores, one `Batch` per line, so adding a field must keep
reading old recordings (fields have defaults).

Timestamps are wall-clock seconds (float, UNIX epoch); the collector turns
the kernel's monotonic nanoseconds into them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sigtop.names import Result, Syscall

# How many detail events a batch keeps when batches must be merged.
MAX_EVENTS_PER_BATCH = 200_000

# The fields of an event the model reads from every one of them, in the
# order of struct event in bpf/sigtop.bpf.c (sender_pid is sender_tgid there).
# In these tuples ts is on the source's own clock and unit (see hot_events).
HOT_FIELDS = (
    "ts", "kind", "sender_pid", "sender_tid", "target_pid", "target_tgid",
    "sig", "code", "result", "ret", "syscall",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class FlowKey:
    """One kernel aggregation key: who sent what to whom, how, with what outcome."""

    sender_pid: int  # process (tgid) of the sender; 0 when the kernel raised it
    target_pid: int  # task id as the kernel reports it; for a failed send, the pid asked for
    target_tgid: int  # the target's process where the kernel told us, else 0
    sig: int
    code: int  # si_code
    err: int  # errno of a failed send, else 0
    syscall: int  # names.Syscall
    result: int  # names.Result

    def targets_pidfd(self) -> bool:
        """A send that reached no process through pidfd_send_signal: target_pid is the fd that was asked for.

        A failed call (or a sig-0 probe) never reaches signal_generate, so the
        kernel never names the process behind the fd; user space may still
        find it in the sender's /proc/PID/fdinfo.
        """
        return self.syscall == Syscall.pidfd_send_signal and self.result in (Result.failed, Result.no_signal)


def event_flow_key(
    sender: int, target_pid: int, target_tgid: int, sig: int, code: int, ret: int, syscall: int, result: int
) -> FlowKey:
    """The flows-map key of the flow a detail event (generate or send_done) was counted in.

    The kernel fills an event's sender_tgid with `current`'s process even for
    a kernel-raised signal (it names the interrupted or faulting task, for
    the drill-down), while the flow key says 0, "the kernel": so the sender
    is 0 unless a syscall sent it. A failed send's errno is carried as the
    syscall's negative return value.
    """
    return FlowKey(
        sender_pid=sender if syscall != Syscall.kernel else 0,
        target_pid=target_pid,
        target_tgid=target_tgid,
        sig=sig,
        code=code,
        err=-ret if ret < 0 else 0,
        syscall=syscall,
        result=result,
    )


@dataclass(slots=True)
class FlowDelta:
    key: FlowKey
    count: int  # new since the previous batch
    first_ts: float
    last_ts: float
    sender_comm: str = ""
    target_comm: str = ""


@dataclass(slots=True)
class ThreadDelta:
    """Per-thread delivery and rt_sigreturn counts, new since the previous batch."""

    tid: int
    tgid: int
    comm: str
    sigreturns: int
    handler_deliveries: int
    deliveries: int
    last_ts: float
    # None in recordings made before the kernel counted these: the model then
    # counts the unmatched_sigreturn events instead.
    unmatched: int | None = None


@dataclass(slots=True)
class SignalfdState:
    """One signalfd of one process, as it stands now."""

    pid: int
    fd: int
    comm: str
    mask: int
    flags: int
    calls: int  # new calls since the previous batch
    created_ts: float  # 0: created before tracing started
    last_ts: float


@dataclass(slots=True)
class SignalEvent:
    """One detail event from the ring buffer (see bpf/sigtop.bpf.c struct event)."""

    ts: float
    kind: int  # names.EventKind
    sender_pid: int
    sender_tid: int
    target_pid: int
    target_tgid: int
    sig: int
    code: int
    result: int
    ret: int
    syscall: int
    arg_pid: int = 0
    arg_tid: int = 0
    info_pid: int = 0
    info_uid: int = 0
    info_value: int = 0
    has_info: bool = False
    flags: int = 0
    group: int = 0
    handler: int = 0  # deliver: sa_handler; signalfd: the mask
    sa_flags: int = 0
    comm: str = ""
    target_comm: str = ""
    latency_ns: int | None = None  # generate to deliver, filled in by the model


def hot_fields(e: SignalEvent) -> tuple:
    return (
        e.ts, e.kind, e.sender_pid, e.sender_tid, e.target_pid, e.target_tgid,
        e.sig, e.code, e.result, e.ret, e.syscall,
    )  # fmt: skip


@dataclass(frozen=True)
class EventLayout:
    """How one kernel's `struct event` is laid out: derived by the collector from BCC."""

    full: struct.Struct  # every field
    hot: struct.Struct  # HOT_FIELDS only, the rest padding; same size as `full`
    decode: Callable[[tuple, float], SignalEvent]  # a `full` tuple and mono_to_wall -> event


class EventBlock(Sequence[SignalEvent]):
    """Detail events as the ring buffer held them: packed records, decoded on demand.

    A storm brings 100,000 events a second, and building an object for each
    would cost more than all the rest of sigtop. The model reads HOT_FIELDS
    from every record (`hot`, one C call for the block) and builds a
    SignalEvent only for those it keeps. Indexing and iterating decode.
    """

    __slots__ = ("data", "layout", "mono_to_wall")

    def __init__(self, data: bytes | bytearray | memoryview, layout: EventLayout, mono_to_wall: float) -> None:
        self.data = data
        self.layout = layout
        self.mono_to_wall = mono_to_wall  # the kernel's ns ktime to wall-clock seconds

    def __len__(self) -> int:
        return len(self.data) // self.layout.full.size

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            size = self.layout.full.size
            start, stop, step = i.indices(len(self))
            if step != 1:
                raise ValueError("an EventBlock slices without a step")
            window = memoryview(self.data)[start * size : max(start, stop) * size]  # no copy
            return EventBlock(window, self.layout, self.mono_to_wall)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.layout.decode(self.layout.full.unpack_from(self.data, i * self.layout.full.size), self.mono_to_wall)

    def __iter__(self) -> Iterator[SignalEvent]:
        decode, wall = self.layout.decode, self.mono_to_wall
        return (decode(t, wall) for t in self.layout.full.iter_unpack(self.data))

    def hot(self) -> Iterable[tuple]:
        """HOT_FIELDS of every event (ts in the kernel's monotonic ns)."""
        return self.layout.hot.iter_unpack(self.data)

    def tail(self, n: int) -> EventBlock:
        return EventBlock(self.data[-n * self.layout.full.size :] if n else b"", self.layout, self.mono_to_wall)

    def extended(self, later: EventBlock) -> EventBlock:
        return EventBlock(b"".join((self.data, later.data)), self.layout, self.mono_to_wall)  # any buffers


def hot_events(events: Sequence[SignalEvent]) -> tuple[Iterable[tuple], float]:
    """HOT_FIELDS of each event (from a block without decoding it), and ns per unit of their ts.

    A block's ts are the kernel's integer ns; a list's, wall-clock seconds
    (whose float has no room left for nanoseconds, so only differences of
    them are scaled).
    """
    if isinstance(events, EventBlock):
        return events.hot(), 1
    return map(hot_fields, events), 1e9


@dataclass(slots=True)
class ProcInfo:
    """What /proc said about a process when it was first seen."""

    pid: int
    tgid: int
    comm: str = ""
    cmdline: str = ""
    user: str = ""
    ppid: int = 0
    parents: list[tuple[int, str]] = field(default_factory=list)  # (pid, comm) up to init
    cgroup: str = ""
    pidfds: dict[int, int] = field(default_factory=dict)  # fd -> pid, for pidfds it holds


@dataclass(slots=True)
class KernelStats:
    """Counters of what could not be kept, new since the previous batch."""

    events_lost: int = 0  # ring buffer full: detail events dropped (counts still exact)
    flows_full: int = 0  # flow map full: a new flow could not be counted
    threads_full: int = 0
    signalfds_full: int = 0
    events_sent: int = 0
    batches_merged: int = 0  # user space: the consumer fell behind, batches were merged
    events_dropped: int = 0  # user space: detail events dropped (decode budget, or while merging)
    # Runs of sigtop's programs the kernel skipped (its per-program
    # recursion_misses), and of those, signal_generate's: signals not counted.
    program_misses: int = 0
    signals_missed: int = 0

    def add(self, other: KernelStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class Batch:
    """Everything new in one collection interval."""

    ts: float  # wall clock at collection
    interval_s: float  # time this batch covers
    flows: list[FlowDelta] = field(default_factory=list)
    threads: list[ThreadDelta] = field(default_factory=list)
    signalfds: list[SignalfdState] = field(default_factory=list)
    events: Sequence[SignalEvent] = field(default_factory=list)  # a list, or a live EventBlock
    procs: list[ProcInfo] = field(default_factory=list)
    stats: KernelStats = field(default_factory=KernelStats)
    final: bool = False  # the last batch of a source
    program_misses: dict[str, int] = field(default_factory=dict)  # skipped runs by probe, new since the last batch

    def merge(self, later: Batch) -> None:
        """Fold a later batch into this one (deltas add up; state is replaced)."""
        self.ts = later.ts
        self.interval_s += later.interval_s
        self.flows.extend(later.flows)
        self.threads.extend(later.threads)
        self.signalfds.extend(later.signalfds)
        self.procs.extend(later.procs)
        self.stats.add(later.stats)
        self.stats.batches_merged += 1
        for probe, n in later.program_misses.items():
            self.program_misses[probe] = self.program_misses.get(probe, 0) + n
        if isinstance(self.events, EventBlock) and isinstance(later.events, EventBlock):
            self.events = self.events.extended(later.events)
        elif later.events:
            self.events = [*self.events, *later.events]
        excess = len(self.events) - MAX_EVENTS_PER_BATCH
        if excess > 0:
            if isinstance(self.events, EventBlock):
                self.events = self.events.tail(MAX_EVENTS_PER_BATCH)
            else:
                self.events = list(self.events[excess:])
            self.stats.events_dropped += excess
        self.final = self.final or later.final

    def to_json(self) -> dict[str, Any]:
        events = self.events
        self.events = []
        try:
            data = asdict(self)
        finally:
            self.events = events
        data["events"] = [asdict(e) for e in events]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Batch:
        """Build a batch from `to_json` output; raises KeyError/TypeError/ValueError when malformed."""
        return cls(
            ts=float(data["ts"]),
            interval_s=float(data["interval_s"]),
            flows=[FlowDelta(**{**f, "key": FlowKey(**f["key"])}) for f in data.get("flows", [])],
            threads=[ThreadDelta(**t) for t in data.get("threads", [])],
            signalfds=[SignalfdState(**s) for s in data.get("signalfds", [])],
            events=[SignalEvent(**e) for e in data.get("events", [])],
            procs=[
                ProcInfo(
                    **{
                        **p,
                        "parents": [tuple(x) for x in p.get("parents", [])],
                        "pidfds": {int(k): v for k, v in p.get("pidfds", {}).items()},
                    }
                )
                for p in data.get("procs", [])
            ],
            stats=KernelStats(**data.get("stats", {})),
            final=bool(data.get("final", False)),
            program_misses={str(k): int(v) for k, v in data.get("program_misses", {}).items()},
        )
