"""The wire records: what flows from a source (live BPF or a recording) to the model and the sinks.

Plain data with no behaviour beyond merging: these are what a recording
stores (sigtop.codec reads and writes them), one `Batch` per line, so a
field added here needs a default and must keep old recordings readable.

Timestamps are wall-clock seconds (float, UNIX epoch), for display; the
collector turns the kernel's monotonic nanoseconds into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from sigtop.abi import kernel_abi
from sigtop.names import Result, Syscall, kernel_origin, syscall_name

# How many detail events a batch keeps when batches must be merged.
MAX_EVENTS_PER_BATCH = 200_000


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

    def as_tuple(self) -> tuple[int, ...]:
        """The key's fields in the kernel's order (struct flow_key, pad left out)."""
        return (
            self.sender_pid, self.target_pid, self.target_tgid, self.sig, self.code,
            self.err, self.syscall, self.result, self.spoofed, self.ns_local,
        )  # fmt: skip


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
    sender_uid: int = -1  # the sender's real uid when the flow began (kernel); -1: the kernel's, or unknown
    # The fates of its queued signals, new since the previous batch (FATES.md in the README):
    taken: int = 0  # taken for action: a handler, the default action, or ignored when taken
    read: int = 0  # left the pending list with no delivery: sigwait, a signalfd read, a flush
    discarded: int = 0  # still pending when the target exited
    untracked: int = 0  # fate unknown: no room to follow it
    # Taken off the list in a ptrace signal-delivery-stop and never delivered: the tracer resumed
    # the target without it (a debugger's "nopass"); suppressed_by: that tracer's pid, the last one.
    suppressed: int = 0
    suppressed_by: int = 0
    latency: LatencyHistogram | None = None  # generate to take, of the signals taken or waited for here


# Generate-to-take latency buckets (bpf/sigtop.h LAT_FIRST_LOG2, LAT_BUCKETS).
LAT_FIRST_LOG2, LAT_BUCKETS = kernel_abi().constants["LAT_FIRST_LOG2"], kernel_abi().constants["LAT_BUCKETS"]


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
    # It had exited, not yet reaped (a zombie: /proc's State Z or X): the kernel ignores every
    # signal sent to it, whatever its masks said when it lived.
    exited: bool = False

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
    threads: int = 0  # death: its threads the kernel ended with a SIGKILL (0: not known)
    # generate, send done: the kernel's key of the flow it was counted in, exactly (never
    # rebuilt in Python; recordings made before events carried it get it from sigtop.codec).
    flow: FlowKey | None = None


@dataclass(slots=True)
class ProcInfo:
    """What /proc said about a process when it was first seen."""

    pid: int
    tgid: int
    comm: str = ""
    cmdline: str = ""
    user: str = ""
    uid: int = -1  # its real uid (-1: unknown, as in recordings made before it was kept)
    ppid: int = 0
    parents: list[tuple[int, str]] = field(default_factory=list)  # (pid, comm) up to init
    cgroup: str = ""
    pidfds: dict[int, int] = field(default_factory=dict)  # fd -> pid, for pidfds it holds
    # When the process started (wall-clock seconds, 10 ms ticks): with pid, its identity.
    # A later process given the same pid has another start time. 0: unknown (old recordings).
    started: float = 0.0
    # The same in clock ticks since boot, as /proc says it: identity is compared on this (exact,
    # and no clock step moves it). 0: unknown (recordings made before it was kept).
    start_ticks: int = 0
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
    # Taken with no record of being queued: queued before sigtop attached, or a generation the
    # kernel did not run signal_generate's program for, with no recursion miss either (measured:
    # about 1 timer signal in 20,000-40,000 under a same-CPU send storm on a busy 2-core box).
    taken_unqueued: int = 0
    filter_full: int = 0  # processes or threads to follow that found the pid filter full

    @property
    def signals_uncounted(self) -> int:
        """Signals known to be in no count: generations the kernel skipped sigtop's program for,
        and signals taken that sigtop never saw generated (a lower bound: an unseen signal that
        is never taken cannot be noticed)."""
        return self.signals_missed + self.taken_unqueued

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
    events: Sequence[SignalEvent] = field(default_factory=list)  # a list, or a live sigtop.events.EventBlock
    procs: list[ProcInfo] = field(default_factory=list)
    stats: KernelStats = field(default_factory=KernelStats)
    final: bool = False  # the last batch of a source
    program_misses: dict[str, int] = field(default_factory=dict)  # skipped runs by probe, new since the last batch
    map_fill: dict[str, float] = field(default_factory=dict)  # how full each kernel map is now, 0..1 (state)
    # Signals queued and not yet taken, by flow (state): None where the source does not follow fates.
    pending: list[PendingFlow] | None = None
    dispositions: list[Disposition] = field(default_factory=list)  # of the targets in view, read now (state)
    cgroups: dict[int, str] = field(default_factory=dict)  # cgroup v2 ids the events name (deaths) -> paths
    # Whether the source sees deaths (the raw signal_generate's siginfo: a kernel with BTF); None: not said.
    deaths_followed: bool | None = None
    # Whether the source traced in light mode (--light: no syscall tracepoint), and so does not
    # see what only a syscall shows (names.LIGHT_UNSEEN); None: not said (a full-mode source).
    light: bool | None = None

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
        if later.deaths_followed is not None:
            self.deaths_followed = later.deaths_followed
        if later.light is not None:
            self.light = later.light
        # A live source's packed blocks join without decoding (EventBlock.extended, .tail).
        joined = getattr(self.events, "extended", None)
        if joined is not None and type(later.events) is type(self.events):
            self.events = joined(later.events)
        elif later.events:
            self.events = [*self.events, *later.events]
        excess = len(self.events) - MAX_EVENTS_PER_BATCH
        if excess > 0:
            tail = getattr(self.events, "tail", None)
            self.events = tail(MAX_EVENTS_PER_BATCH) if tail is not None else list(self.events[excess:])
            self.stats.events_dropped += excess
        self.final = self.final or later.final
