"""The records that flow from a source (live BPF or a recording) to the model.

Plain data, no behaviour beyond (de)serialising and merging: these are what
a recording stores, one `Batch` per line, so adding a field must keep
reading old recordings (fields have defaults).

Timestamps are wall-clock seconds (float, UNIX epoch); the collector turns
the kernel's monotonic nanoseconds into them.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from sigtop.names import Result, Syscall, kernel_origin, known_code, syscall_name

# How many detail events a batch keeps when batches must be merged.
MAX_EVENTS_PER_BATCH = 200_000

# The fields of an event the model reads from every one of them, in the
# order of struct event in bpf/sigtop.bpf.c (sender_pid is sender_tgid there).
# In these tuples ts is on the source's own clock and unit (see hot_events).
HOT_FIELDS = (
    "ts", "kind", "sender_pid", "sender_tid", "target_pid", "target_tgid",
    "sig", "code", "result", "ret", "syscall", "spoofed", "ns_local",
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
    spoofed: int = 0  # 1: the siginfo claimed another sender (si_pid/si_uid) than the real one
    ns_local: int = 0  # 1: a failed send or probe from a child pid namespace: target_pid is that namespace's

    def origin(self) -> str:
        """How the signal came: the syscall's name, the kernel's class (fault, child, timer...), or overflow."""
        if self.syscall == Syscall.overflow:
            return "overflow"  # no room in the kernel's map: counted by signal only
        if self.syscall == Syscall.kernel:
            return kernel_origin(self.sig, self.code)
        return syscall_name(self.syscall)

    def targets_pidfd(self) -> bool:
        """A pidfd_send_signal that reached no process: target_pid is the fd that was asked for.

        A sig-0 probe never reaches signal_generate, so the kernel never names
        the process behind the fd; user space may find it in the sender's
        /proc/PID/fdinfo. A failed call's fd is not kept in the key (the
        caller may pick any number; see bpf send_exit), except in recordings
        made before that, which carry it.
        """
        if self.syscall != Syscall.pidfd_send_signal:
            return False
        return self.result == Result.no_signal or (self.result == Result.failed and self.target_pid != 0)


def event_flow_key(
    sender: int,
    target_pid: int,
    target_tgid: int,
    sig: int,
    code: int,
    ret: int,
    syscall: int,
    result: int,
    spoofed: int = 0,
    ns_local: int = 0,
) -> FlowKey:
    """The flows-map key of the flow a detail event (generate or send_done) was counted in.

    The kernel's key differs from the event in three ways (bpf send_exit
    and on_generate), rebuilt here and nowhere else:
    * an event's sender_tgid is `current`'s process even for a kernel-raised
      signal (it names the interrupted or faulting task, for the drill-down),
      while the key says 0, "the kernel";
    * a failed send's key keeps neither the asked target nor the code (the
      caller chooses them freely), except for EPERM, whose target exists;
      the event keeps both; its errno is the syscall's negative return;
    * a caller-made si_code the kernel does not define is CODE_OTHER in the key.
    """
    err = -ret if ret < 0 else 0
    if result == Result.failed:
        keep_target = err == errno.EPERM and syscall != Syscall.pidfd_send_signal
        return FlowKey(
            sender,
            target_pid if keep_target else 0,
            target_tgid if keep_target else 0,
            sig,
            0,
            err,
            syscall,
            result,
            ns_local=ns_local,
        )
    return FlowKey(
        sender_pid=sender if syscall != Syscall.kernel else 0,
        target_pid=target_pid,
        target_tgid=target_tgid,
        sig=sig,
        code=known_code(code),
        err=err,
        syscall=syscall,
        result=result,
        spoofed=spoofed,
        ns_local=ns_local,
    )


@dataclass(slots=True)
class FlowDelta:
    key: FlowKey
    count: int  # new since the previous batch
    first_ts: float
    last_ts: float
    sender_comm: str = ""
    target_comm: str = ""
    claimed: tuple[int, int] | None = None  # a spoofed flow: the (si_pid, si_uid) its siginfo claimed
    sender_cgroup: str = ""  # the sender's cgroup v2 path when the flow began (kernel), if resolved
    # The fates of its queued signals, new since the previous batch (FATES.md in the README):
    taken: int = 0  # taken for action: a handler, the default action, or ignored when taken
    read: int = 0  # left the pending list with no delivery: sigwait, a signalfd read, a flush
    discarded: int = 0  # still pending when the target exited
    untracked: int = 0  # fate unknown: no room to follow it
    latency: LatencyHistogram | None = None  # generate to take, of the signals taken or waited for here


# Generate-to-take latency buckets (bpf/sigtop.h LAT_FIRST_LOG2, LAT_BUCKETS).
LAT_FIRST_LOG2, LAT_BUCKETS = 9, 56


def latency_bucket_bounds(i: int) -> tuple[int, int]:
    """Bucket i's [low, high) in ns, as the kernel's latency_bucket() fills it (0 from 0, the last to any)."""
    b = LAT_FIRST_LOG2 + i // 2
    low = (1 << b) + (i % 2) * (1 << (b - 1))
    high = low + (1 << (b - 1))
    return (0 if i == 0 else low), (2**63 if i == LAT_BUCKETS - 1 else high)


@dataclass(slots=True)
class LatencyHistogram:
    """Every take's latency, in half-octave buckets (exact counts; a value is known to within its bucket)."""

    buckets: list[int] = field(default_factory=lambda: [0] * LAT_BUCKETS)
    max_ns: int = 0  # the longest, exact
    sum_ns: int = 0  # all of them added up, exact

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def add(self, other: LatencyHistogram) -> None:
        for i, n in enumerate(other.buckets[:LAT_BUCKETS]):
            self.buckets[i] += n
        self.max_ns = max(self.max_ns, other.max_ns)
        self.sum_ns += other.sum_ns

    def quantile(self, q: float) -> int:
        """The upper bound of the bucket holding quantile q (capped by the exact max): 0 when empty."""
        total = self.count
        if not total:
            return 0
        rank = q * total
        seen = 0
        for i, n in enumerate(self.buckets):
            seen += n
            if n and seen >= rank:
                return min(latency_bucket_bounds(i)[1], self.max_ns)
        return self.max_ns


@dataclass(slots=True)
class Disposition:
    """How a process treats each signal, as /proc showed it at a batch (bit n-1 = signal n)."""

    pid: int
    caught: int  # SigCgt: a handler
    ignored: int  # SigIgn: SIG_IGN
    pending: int  # ShdPnd | the threads' SigPnd
    # (tid, SigBlk) of each thread (at most MAX_THREAD_MASKS): a process-directed signal waits
    # while every thread blocks it; a signalfd gets it only where its thread blocks it.
    threads: list[tuple[int, int]] = field(default_factory=list)
    ts: float = 0.0  # when /proc said so (the target may have exited since)

    def blocked_by_all(self) -> int:
        mask = -1
        for _tid, blocked in self.threads:
            mask &= blocked
        return mask if self.threads else 0

    def unblocked_threads(self, sig: int) -> list[int]:
        return [tid for tid, blocked in self.threads if not blocked >> (sig - 1) & 1]


@dataclass(slots=True)
class PendingFlow:
    """A flow's signals queued and not yet taken, read or discarded (state, as of the batch)."""

    key: FlowKey
    count: int
    since: float  # when the oldest of them was queued (wall clock)


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
    spoofed: int = 0  # generate: the siginfo claimed another sender than the real one
    comm: str = ""
    ns_local: int = 0  # send_done: the asked target is a pid of the sender's namespace
    target_comm: str = ""
    latency_ns: int | None = None  # generate to deliver, filled in by the model
    taken_tid: int = 0  # the thread whose signal_deliver took it (model); 0: not seen taken


def hot_fields(e: SignalEvent) -> tuple:
    return (
        e.ts, e.kind, e.sender_pid, e.sender_tid, e.target_pid, e.target_tgid,
        e.sig, e.code, e.result, e.ret, e.syscall, e.spoofed, e.ns_local,
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
    # When the process started (wall-clock seconds, 10 ms ticks): with pid, its identity.
    # A later process given the same pid has another start time. 0: unknown (old recordings).
    started: float = 0.0
    nspid: list[int] = field(default_factory=list)  # its pid in each pid namespace, host first (NSpid)
    ns_pids: dict[int, int] = field(default_factory=dict)  # a pid of its own namespace -> the host's


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
    # Fates of queued signals that could not be followed (bpf/sigtop.h STAT_*).
    pending_full: int = 0  # queued with no room in the pending map
    exits_full: int = 0  # an exit's pending signals with no room to tell them
    taken_unqueued: int = 0  # taken with no record of being queued (queued before sigtop attached)

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
    map_fill: dict[str, float] = field(default_factory=dict)  # how full each kernel map is now, 0..1 (state)
    # Signals queued and not yet taken, by flow (state): None where the source does not follow fates.
    pending: list[PendingFlow] | None = None
    dispositions: list[Disposition] = field(default_factory=list)  # of the targets in view, read now (state)
    cgroups: dict[int, str] = field(default_factory=dict)  # cgroup v2 ids the events name (deaths) -> paths

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
        self.map_fill = later.map_fill or self.map_fill
        self.pending = later.pending if later.pending is not None else self.pending
        self.dispositions.extend(later.dispositions)
        self.cgroups.update(later.cgroups)
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
    def from_json(cls, data: Any) -> Batch:
        """Build a batch from `to_json` output, checking every value; RecordValueError names the first bad one.

        The boundary for recordings, which anyone may have crafted: every
        field has its type and range checked here, so nothing past it can
        crash on a null count, a list where a string belongs or a
        timestamp of 1e300. Keys a newer sigtop added are ignored; ids it
        added (a syscall, an event kind) are kept and shown as numbers.
        """
        return _build(cls, data, "batch", nested=_BATCH_PARTS)


class RecordValueError(ValueError):
    """A recorded value of the wrong type or out of range, naming where it is."""


MAX_TS = 1e11  # seconds since 1970: the year 5138
MAX_COUNT = 2**63
MAX_TEXT = 1 << 20
INT32 = (-(2**31), 2**32)  # pids, signals, codes: 32-bit in the kernel (signed or not)
INT64 = (-(2**63), 2**64)


def _int(value: Any, where: str, low: int = INT64[0], high: int = INT64[1]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise RecordValueError(f"{where}: {value!r:.40} is not an integer in [{low}, {high})")
    return value


def _float(value: Any, where: str, low: float = 0.0, high: float = MAX_TS) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:  # NaN fails
        raise RecordValueError(f"{where}: {value!r:.40} is not a number in [{low:g}, {high:g}]")
    return float(value)


def _str(value: Any, where: str) -> str:
    if type(value) is not str or len(value) > MAX_TEXT:
        raise RecordValueError(f"{where}: {value!r:.40} is not a string (of at most {MAX_TEXT} characters)")
    return value


def _bool(value: Any, where: str) -> bool:
    if type(value) not in (bool, int):
        raise RecordValueError(f"{where}: {value!r:.40} is not a boolean")
    return bool(value)


def _optional_count(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where, 0, MAX_COUNT)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list | tuple):
        raise RecordValueError(f"{where}: {value!r:.40} is not a list")
    return value


def _parents(value: Any, where: str) -> list[tuple[int, str]]:
    parents = []
    for i, item in enumerate(_list(value, where)):
        pair = _list(item, f"{where}[{i}]")
        if len(pair) != 2:
            raise RecordValueError(f"{where}[{i}]: not a (pid, comm) pair")
        parents.append((_int(pair[0], f"{where}[{i}]", *INT32), _str(pair[1], f"{where}[{i}]")))
    return parents


def _pidfds(value: Any, where: str) -> dict[int, int]:
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    out = {}
    for key, v in value.items():
        fd = int(key) if isinstance(key, str) and key.lstrip("-").isdigit() and len(key) < 12 else key  # JSON: strings
        out[_int(fd, f"{where} key", *INT32)] = _int(v, f"{where}[{key}]", *INT32)
    return out


def _misses(value: Any, where: str) -> dict[str, int]:
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    return {_str(k, where): _int(v, f"{where}[{k}]", 0, MAX_COUNT) for k, v in value.items()}


def _pairs(value: Any, where: str) -> list[tuple[int, int]]:
    """(tid, mask) pairs, at most 4096 of them."""
    out = []
    for i, item in enumerate(_list(value, where)[:4096]):
        pair = _list(item, f"{where}[{i}]")
        if len(pair) != 2:
            raise RecordValueError(f"{where}[{i}]: not a pair")
        out.append((_int(pair[0], f"{where}[{i}]", *INT32), _int(pair[1], f"{where}[{i}]", 0, 2**64)))
    return out


def _claim(value: Any, where: str) -> tuple[int, int] | None:
    """A spoofed flow's claimed (si_pid, si_uid), or None."""
    if value is None:
        return None
    pair = _list(value, where)
    if len(pair) != 2:
        raise RecordValueError(f"{where}: not an (si_pid, si_uid) pair")
    return _int(pair[0], where, *INT32), _int(pair[1], where, 0, 2**32)


def _cgroup_paths(value: Any, where: str) -> dict[int, str]:
    if type(value) is not dict or len(value) > 100_000:
        raise RecordValueError(f"{where}: not an object (of at most 100,000 entries)")
    out = {}
    for key, path in value.items():
        ident = int(key) if isinstance(key, str) and key.isdigit() and len(key) < 21 else key  # JSON: strings
        out[_int(ident, f"{where} key", 0, 2**64)] = _str(path, f"{where}[{key}]")
    return out


def _fills(value: Any, where: str) -> dict[str, float]:
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    return {_str(k, where): _float(v, f"{where}[{k}]", 0.0, 1.0) for k, v in value.items()}


def _histogram(value: Any, where: str) -> LatencyHistogram:
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    buckets = _list(value.get("buckets", []), f"{where}.buckets")
    if len(buckets) > LAT_BUCKETS:
        raise RecordValueError(f"{where}.buckets: more than {LAT_BUCKETS}")
    counts = [_int(n, f"{where}.buckets[{i}]", 0, MAX_COUNT) for i, n in enumerate(buckets)]
    return LatencyHistogram(
        counts + [0] * (LAT_BUCKETS - len(counts)),
        _int(value.get("max_ns", 0), f"{where}.max_ns", 0, MAX_COUNT),
        _int(value.get("sum_ns", 0), f"{where}.sum_ns", 0, MAX_COUNT),
    )


# Checks by the annotation each field is declared with (from __future__ annotations: strings).
_BY_TYPE = {
    "int": lambda v, w: _int(v, w, *INT64),
    "float": _float,
    "str": _str,
    "bool": _bool,
    "int | None": _optional_count,
    "list[tuple[int, str]]": _parents,
    "dict[int, int]": _pidfds,
    "dict[str, int]": _misses,
    "dict[str, float]": _fills,
    "dict[int, str]": _cgroup_paths,
    "tuple[int, int] | None": _claim,
    "LatencyHistogram | None": lambda v, w: None if v is None else _histogram(v, w),
    "list[tuple[int, int]]": _pairs,
    "list[int]": lambda v, w: [_int(x, f"{w}[{i}]", *INT32) for i, x in enumerate(_list(v, w))][:32],
}


# Narrower ranges where a field has one (one table: the fast path and the full check both read it).
_NAMED_BOUNDS: dict[str, tuple[float, float]] = {
    "count": (0, MAX_COUNT),
    **dict.fromkeys(("taken", "read", "discarded", "untracked"), (0, MAX_COUNT)),
    "calls": (0, MAX_COUNT),
    "result": (0, len(Result)),
    "interval_s": (0.0, 1e7),
    **dict.fromkeys(("mask", "info_value", "handler", "sa_flags", "caught", "ignored"), (0, 2**64)),
    **dict.fromkeys(("sender_pid", "target_pid", "target_tgid", "sig", "code", "err", "tid", "tgid", "pid"), INT32),
    **dict.fromkeys(("fd", "ppid", "sender_tid", "ret", "arg_pid", "arg_tid", "info_pid", "info_uid"), INT32),
    **dict.fromkeys(("flags", "group"), INT32),
    **dict.fromkeys(("syscall", "kind"), (0, 2**16)),
    "spoofed": (0, 2),
    "ns_local": (0, 2),
    "taken_tid": INT32,
}
_BY_NAME: dict[str, Any] = {
    name: (lambda v, w, b=bounds: _float(v, w, *b))
    if isinstance(bounds[0], float)
    else (lambda v, w, b=bounds: _int(v, w, *b))
    for name, bounds in _NAMED_BOUNDS.items()
}
_BY_NAME["latency_ns"] = lambda v, w: None if v is None else _int(v, w, 0, MAX_COUNT)  # None: not matched


_INT, _FLOAT, _STR, _OTHER = range(4)
_PLANS: dict[tuple, list[tuple]] = {}


def _plan(cls: type, nested: dict[str, Any], counts: bool) -> list[tuple]:
    """How to check each field of a records dataclass, worked out once per class:
    (name, kind, low, high, checker, required). The checker is the full check,
    run when the fast one fails (or for kinds without one), to accept or to
    name what is wrong."""
    key = (cls, id(nested), counts)
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    plan = []
    for f in fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        if f.name in nested:
            plan.append((f.name, _OTHER, 0, 0, nested[f.name], required))
        elif counts and f.type == "int":
            plan.append((f.name, _INT, 0, MAX_COUNT, lambda v, w: _int(v, w, 0, MAX_COUNT), required))
        elif f.name in _BY_NAME and f.type in ("int", "float", "int | None"):
            check = _BY_NAME[f.name]
            bounds = _NAMED_BOUNDS.get(f.name)
            kind = (_FLOAT if f.type == "float" else _INT) if bounds else _OTHER
            plan.append((f.name, kind, *(bounds or (0, 0)), check, required))
        elif f.type in _BY_TYPE:
            kind = {"int": _INT, "float": _FLOAT, "str": _STR}.get(f.type, _OTHER)
            low, high = {"int": INT64, "float": (0.0, MAX_TS)}.get(f.type, (0, 0))
            plan.append((f.name, kind, low, high, _BY_TYPE[f.type], required))
        else:
            raise TypeError(f"cannot read field {cls.__name__}.{f.name} ({f.type})")  # a sigtop bug
    _PLANS[key] = plan
    return plan


def _build(cls: type, data: Any, where: str, nested: dict[str, Any] | None = None, counts: bool = False) -> Any:
    """An instance of a records dataclass from a JSON object, every field checked (counts: ints are counts)."""
    if type(data) is not dict:
        raise RecordValueError(f"{where}: {data!r:.40} is not an object")
    kwargs: dict[str, Any] = {}
    for name, kind, low, high, check, required in _plan(cls, nested or _NO_NESTED, counts):
        if name not in data:
            if required:
                raise RecordValueError(f"{where}: no {name}")
            continue
        value = data[name]
        # The fast checks (exact types, in range); anything else gets the full check, which names it.
        if kind == _INT:
            if type(value) is int and low <= value < high:
                kwargs[name] = value
                continue
        elif kind == _FLOAT:
            if (type(value) is float or type(value) is int) and low <= value <= high:
                kwargs[name] = float(value)
                continue
        elif kind == _STR and type(value) is str and len(value) <= MAX_TEXT:
            kwargs[name] = value
            continue
        kwargs[name] = check(value, f"{where}.{name}")
    return cls(**kwargs)


_NO_NESTED: dict[str, Any] = {}


def _each(cls: type, nested: dict[str, Any] | None = None) -> Any:
    return lambda value, at: [_build(cls, item, f"{at}[{i}]", nested) for i, item in enumerate(_list(value, at))]


def _pending(value: Any, at: str) -> list[PendingFlow] | None:
    return None if value is None else _each(PendingFlow, {"key": lambda v, w: _build(FlowKey, v, w)})(value, at)


_BATCH_PARTS: dict[str, Any] = {
    "pending": _pending,
    "dispositions": _each(Disposition),
    "flows": _each(FlowDelta, {"key": lambda v, at: _build(FlowKey, v, at)}),
    "threads": _each(ThreadDelta),
    "signalfds": _each(SignalfdState),
    "events": _each(SignalEvent),
    "procs": _each(ProcInfo),
    "stats": lambda v, at: _build(KernelStats, v, at, counts=True),
}
