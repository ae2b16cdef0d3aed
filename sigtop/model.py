"""The model: folds batches into the flows, signalfd and sigreturn tables.

Pure: no bcc, no textual, no /proc. Everything it knows arrives in a
`Batch`, so it runs the same on live data, a recording, or a test's list.
"""

from __future__ import annotations

import signal
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from sigtop.alerts import Alert, AlertDetector
from sigtop.containers import container_of
from sigtop.names import (
    GENERATED_RESULTS,
    EventKind,
    Result,
    printable,
    si_code_name,
    signame,
)
from sigtop.records import (
    Batch,
    Disposition,
    FlowDelta,
    FlowKey,
    KernelStats,
    LatencyHistogram,
    ProcInfo,
    SignalEvent,
    SignalfdState,
    ThreadDelta,
    event_flow_key,
    hot_events,
)

EVENTS_PER_ROW = 200
HISTORY_POINTS = 120
MAX_PROCS = 20_000
# What the process table may hold in command lines, in all: each is capped
# where it is read (4 KiB); past this the least recently seen go first.
MAX_PROC_TEXT = 16 << 20
MAX_CMDLINE = 4096 + 64  # a recording may hold longer ones: cut here too
MAX_RETIRED = 5_000  # earlier owners of reused pids, kept for their rows' drill-downs
CLD_DUMPED = 3
START_SLACK_S = 0.011  # start times are in 10 ms ticks (truncated): one tick, and a bit
# Generated signals waiting for their delivery (to time them), by (process,
# signal): a standard signal is pending once at most; realtime ones queue.
MAX_PENDING_DELIVERIES = 5_000
PENDING_PER_KEY = 64
# Detail events kept across all rows (~250 bytes each); past it the least
# recently seen rows give up their details first (their counts stay).
MAX_KEPT_EVENTS = 100_000


@dataclass(frozen=True, slots=True)
class FlowRowKey:
    """A row of the flows table: sender process -> target process, signal, how."""

    sender_pid: int  # 0: the kernel
    target_pid: int  # process id; < 0: a process group (kill(-pgid) that failed)
    sig: int
    via: str  # syscall name, or the kernel origin class (fault, child, timer, ...)
    pidfd: int = -1  # a failed pidfd_send_signal whose target is unknown: its fd
    # Which process of that pid (0, 1, ...: a new one each time the pid is reused):
    # a row never carries one process's identity over to another.
    sender_gen: int = 0
    target_gen: int = 0
    spoofed: bool = False  # the sends' siginfo claimed another sender: a row of their own
    ns_of: int = 0  # target_pid is a pid of this (sender) process's pid namespace, not found on the host


OVERFLOW = "overflow"  # FlowRowKey.via of the rows counting what did not fit the kernel's map


@dataclass(slots=True)
class FlowRow:
    key: FlowRowKey
    sender_comm: str = ""
    target_comm: str = ""
    syscall: int = 0
    results: list[int] = field(default_factory=lambda: [0] * len(Result))
    errors: Counter[int] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    first_ts: float = 0.0
    last_ts: float = 0.0
    rate: float = 0.0  # signals/s over the last interval
    # The row's last EVENTS_PER_ROW detail events; () until it keeps one (20,000 empty deques: 15 MB).
    events: deque[SignalEvent] | tuple[()] = ()
    sender_comm_now: str = ""  # the sender's comm in /proc now, where it differs (it exec'd)
    claimed: tuple[int, int] | None = None  # spoofed: the (si_pid, si_uid) the siginfo claimed
    sender_container: str = ""  # containers.Container.label of each end ("" on the host)
    target_container: str = ""
    # The fates of its queued signals (where the source follows them: SignalModel.fates_followed).
    taken: int = 0  # taken for action: a handler, the default action, or ignored when taken
    read: int = 0  # left the pending list with no delivery: sigwait, a signalfd read, a flush
    discarded: int = 0  # still pending when the target exited
    untracked: int = 0  # no room to follow them
    pending: int = 0  # queued and none of the above yet (state)
    pending_since: float = 0.0  # when the oldest of those was queued
    latency: LatencyHistogram | None = None  # generate to take (or sigwait), every one
    fates: bool = False  # the fields above are followed (else unknown: no BTF, or an old recording)
    reason: str = ""  # why its signals did not all take effect (sigtop.reasons), set where shown

    @property
    def count(self) -> int:
        """Signals generated (whatever their result)."""
        return sum(self.results[r] for r in GENERATED_RESULTS)

    @property
    def failed(self) -> int:
        return self.results[Result.failed]

    @property
    def queued(self) -> int:
        """Signals the kernel put on a pending list (TRACE_SIGNAL_DELIVERED means queued, not delivered)."""
        return self.results[Result.delivered] + self.results[Result.lose_info]

    @property
    def received(self) -> int:
        """Queued signals the target got: taken for action, or read (sigwait, signalfd)."""
        return self.taken + self.read

    @property
    def attempts(self) -> int:
        return sum(self.results)


@dataclass(slots=True)
class SigreturnRow:
    """rt_sigreturn and handler deliveries of one process."""

    pid: int
    comm: str = ""
    sigreturns: int = 0
    handler_deliveries: int = 0
    deliveries: int = 0
    unmatched: int = 0  # rt_sigreturn with no handler frame outstanding (SROP?)
    rate: float = 0.0  # rt_sigreturn/s over the last interval
    handler_rate: float = 0.0
    last_ts: float = 0.0
    history: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    # The row's last EVENTS_PER_ROW detail events; () until it keeps one (20,000 empty deques: 15 MB).
    events: deque[SignalEvent] | tuple[()] = ()

    @property
    def balance(self) -> int:
        """Handler deliveries minus returns: > 0 handlers left by longjmp, < 0 suspicious."""
        return self.handler_deliveries - self.sigreturns


@dataclass(slots=True)
class Death:
    """A process that ended because of a signal, and who or what sent it."""

    pid: int
    comm: str
    sig: int
    core: bool  # it dumped core (CLD_DUMPED)
    ts: float
    parent: int
    cause: str  # one line: "1234 kubelet via kill, after SIGTERM (stop timeout)", "fault (SEGV_MAPERR)", ...
    cause_kind: str = (
        "unknown"  # bounded, for metrics: sender, stop-timeout, fault, self, oom, parent-death, kernel, unknown
    )
    sender_pid: int = 0  # the process that sent the fatal signal (0: the kernel, or not seen)
    lifetime_s: float | None = None  # from its start time, where /proc told it
    cgroup: str = ""  # its cgroup when it died (the kernel's, else /proc's)


MAX_DEATHS = 5_000
MAX_ALERTS = 1_000
ESCALATION_S = 60.0  # a SIGTERM then a SIGKILL from one sender within this: a stop timeout
OOM_TO_DEATH_S = 60.0  # an OOM victim that dies of SIGKILL within this was killed by the OOM killer
MAX_OOM_VICTIMS = 1_000


@dataclass(slots=True)
class SignalfdRow:
    pid: int
    fd: int
    comm: str = ""
    mask: int = 0
    flags: int = 0
    calls: int = 0
    created_ts: float = 0.0
    last_ts: float = 0.0
    history: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    health: str = ""  # signals of its mask some thread does not block (sigtop.reasons), set where shown


# Plain ints for the per-event loop (enum members compare slower).
_GENERATE, _DELIVER = int(EventKind.generate), int(EventKind.deliver)
_UNMATCHED_SIGRETURN, _DELIVERED = int(EventKind.unmatched_sigreturn), int(Result.delivered)
_DEATH, _OOM, _SIGACTION = int(EventKind.death), int(EventKind.oom), int(EventKind.sigaction)
_FLOW_EVENTS = frozenset((_GENERATE, int(EventKind.send_done)))


# A generated (or kept) event of one batch, as a list for speed:
# [index in its batch, ts as hot_events gives it, latency in ns or None, the SignalEvent once decoded].
# Decoded at the batch's end if a row keeps it; its latency set whenever its
# delivery is seen, maybe batches later.
_Slot = list
_INDEX, _TS, _LATENCY, _EVENT, _TAKEN_BY = range(5)


class SignalModel:
    """Tables of everything seen, with rates over the last interval and bounded memory."""

    def __init__(self, max_rows: int = 20_000) -> None:
        self.max_rows = max_rows
        self.flows: dict[FlowRowKey, FlowRow] = {}
        # By pid: the process that holds it now; an earlier owner's row by (pid, its generation).
        self.sigreturns: dict[int | tuple[int, int], SigreturnRow] = {}
        self.signalfds: dict[tuple[int, int], SignalfdRow] = {}
        self.procs: OrderedDict[int, ProcInfo] = OrderedDict()
        self.generation: dict[int, int] = {}  # pid -> how many times it was seen reused
        self._retired: OrderedDict[tuple[int, int], ProcInfo] = OrderedDict()  # (pid, gen) of earlier owners
        # pid -> when its current generation's first row began (to tell a later owner from it)
        self._rows_since: OrderedDict[int, float] = OrderedDict()
        self.proc_text = 0  # characters of cmdline and cgroup held in procs
        self.stats = KernelStats()
        self.program_misses: Counter[str] = Counter()  # skipped runs by probe
        self.map_fill: dict[str, float] = {}  # how full each kernel map was at the last batch
        self.evicted_rows = 0
        self.events_trimmed = 0  # details given up to stay within MAX_KEPT_EVENTS (counts unaffected)
        self.duration_s = 0.0
        self.last_ts = 0.0
        self.total_signals = 0
        self.signals_per_sec = 0.0
        self.batches = 0
        self.events_received = 0  # detail events decoded (the rest: stats.events_lost, events_dropped)
        self.finished = False
        # generate events waiting for their signal_deliver, by (process, signal)
        self._pending: OrderedDict[tuple[int, int], deque[_Slot]] = OrderedDict()
        self._rated_flows: set[FlowRowKey] = set()
        self._unmatched_counted = False  # thread deltas carry exact unmatched counts
        # Called with (signal, latency in ns) for every delivery matched to its generation
        # (the exporter's histogram); None: nobody asks.
        self.on_latency: Callable[[int, int], None] | None = None
        self.deaths: deque[Death] = deque(maxlen=MAX_DEATHS)
        self.deaths_seen = 0  # ever (the deque keeps the newest MAX_DEATHS)
        # The OOM killer's recent choices: pid -> (when, anon rss in kB), for the deaths' cause.
        self._oom_victims: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self._cgroup_paths: OrderedDict[int, str] = OrderedDict()  # cgroup v2 id -> path (deaths)
        # Dispositions set while sigtop ran: (pid, signal) -> (when, handler: 0 default, 1 ignore, else a handler).
        self.disposition_changes: OrderedDict[tuple[int, int], tuple[float, int]] = OrderedDict()
        self.alert_detector = AlertDetector()
        self.alerts: deque[Alert] = deque(maxlen=MAX_ALERTS)
        self._rated_sigreturns: set[int] = set()
        self.fates_followed = False  # the source follows queued signals to their end
        self._rows_pending: set[FlowRowKey] = set()  # rows with pending > 0
        # How each target treats signals, as /proc last said (handled, ignored, blocked by which threads).
        self.dispositions: OrderedDict[int, Disposition] = OrderedDict()

    # ---- folding ---------------------------------------------------------

    def apply(self, batch: Batch, with_events: bool = True) -> None:
        """Fold one batch in. Deltas add up; rates cover this batch's interval.

        with_events=False leaves its detail events to `apply_events`, which a
        live view feeds in slices so that a storm's cannot stall it.
        """
        self.batches += 1
        self.duration_s += batch.interval_s
        self.last_ts = batch.ts
        self.stats.add(batch.stats)
        self.program_misses.update(batch.program_misses)
        self.map_fill = batch.map_fill or self.map_fill
        self.finished = self.finished or batch.final
        self.fates_followed = self.fates_followed or batch.pending is not None
        for proc in batch.procs:
            self._remember_proc(proc)
        for cgroup_id, path in batch.cgroups.items():
            self._cgroup_paths[cgroup_id] = printable(path[:MAX_CMDLINE])
            self._cgroup_paths.move_to_end(cgroup_id)
        while len(self._cgroup_paths) > MAX_PROCS:
            self._cgroup_paths.popitem(last=False)
        for disposition in batch.dispositions:
            self.dispositions[disposition.pid] = disposition
            self.dispositions.move_to_end(disposition.pid)
        while len(self.dispositions) > MAX_PROCS:
            self.dispositions.popitem(last=False)

        interval = batch.interval_s if batch.interval_s > 0 else 1.0
        generated = 0
        flow_deltas: Counter[FlowRowKey] = Counter()
        for delta in batch.flows:
            row = self._flow_row(delta.key, delta)
            row.fates = self.fates_followed
            row.results[delta.key.result] += delta.count
            if delta.key.result == Result.failed:
                row.errors[delta.key.err] += delta.count
            row.codes[delta.key.code] += delta.count
            if delta.first_ts:
                row.first_ts = min(row.first_ts, delta.first_ts) if row.first_ts else delta.first_ts
            row.last_ts = max(row.last_ts, delta.last_ts)
            if delta.taken or delta.read or delta.discarded or delta.untracked:
                row.taken += delta.taken
                row.read += delta.read
                row.discarded += delta.discarded
                row.untracked += delta.untracked
            if delta.latency is not None:
                if row.latency is None:
                    row.latency = LatencyHistogram()
                row.latency.add(delta.latency)
            if delta.key.result in GENERATED_RESULTS:
                flow_deltas[row.key] += delta.count
                generated += delta.count
        for key in self._rated_flows - flow_deltas.keys():
            if key in self.flows:
                self.flows[key].rate = 0.0
        for key, n in flow_deltas.items():
            self.flows[key].rate = n / interval
        self._rated_flows = set(flow_deltas)
        self.total_signals += generated
        self.signals_per_sec = generated / interval

        if batch.pending is not None:
            self._apply_pending(batch)
        self._apply_threads(batch.threads, interval)
        self.alerts.extend(self.alert_detector.scan(batch, self.procs))
        for state in batch.signalfds:
            self._apply_signalfd(state)
        if with_events:
            self.apply_events(batch.events)
        self._evict()

    def _apply_pending(self, batch: Batch) -> None:
        """What is pending now, by row (state: it replaces the last batch's)."""
        for key in self._rows_pending:
            row = self.flows.get(key)
            if row is not None:
                row.pending, row.pending_since = 0, 0.0
        rows = set()
        for p in batch.pending or ():
            row = self.flows.get(self.row_key(p.key))
            if row is None:  # not seen counted yet (a recording cut mid-way): nothing to add it to
                continue
            row.pending += p.count
            row.pending_since = min(row.pending_since, p.since) if row.pending_since else p.since
            rows.add(row.key)
        self._rows_pending = rows

    def _remember_proc(self, proc: ProcInfo) -> None:
        # The sanitising choke point for what /proc (or a recording) said.
        if len(proc.cmdline) > MAX_CMDLINE:
            proc.cmdline = proc.cmdline[:MAX_CMDLINE] + f" …[cut at {MAX_CMDLINE} characters]"
        proc.comm, proc.cmdline, proc.user = printable(proc.comm), printable(proc.cmdline), printable(proc.user)
        proc.cgroup = printable(proc.cgroup[:MAX_CMDLINE])
        proc.parents = [(pid, printable(comm[:64])) for pid, comm in proc.parents[:32]]
        old = self.procs.get(proc.pid)
        earlier_rows = self._rows_since.get(proc.pid)
        reused = (
            old is not None and old.started and proc.started and abs(old.started - proc.started) > START_SLACK_S
        ) or (
            # The owner before exited unread, but its rows say it was there first.
            old is None and proc.started and earlier_rows is not None and earlier_rows < proc.started - START_SLACK_S
        )
        if reused:
            # Another process under the same pid: its rows start afresh.
            gen = self.generation.get(proc.pid, 0)
            self._retired[(proc.pid, gen)] = old
            while len(self._retired) > MAX_RETIRED:
                self._retired.popitem(last=False)
            self.generation[proc.pid] = gen + 1
            self._rows_since.pop(proc.pid, None)
            earlier = self.sigreturns.pop(proc.pid, None)
            if earlier is not None:  # stays, as the earlier owner's
                self.sigreturns[(proc.pid, gen)] = earlier
        if old is not None:
            self.proc_text -= len(old.cmdline) + len(old.cgroup)
        self.procs[proc.pid] = proc
        self.procs.move_to_end(proc.pid)
        self.proc_text += len(proc.cmdline) + len(proc.cgroup)
        while len(self.procs) > MAX_PROCS or self.proc_text > MAX_PROC_TEXT:
            _pid, gone = self.procs.popitem(last=False)
            self.proc_text -= len(gone.cmdline) + len(gone.cgroup)

    def proc_of(self, pid: int, gen: int = 0) -> ProcInfo | None:
        """What /proc said about that pid's process of that generation (an earlier owner's, for an old row)."""
        if gen == self.generation.get(pid, 0):
            return self.procs.get(pid)
        return self._retired.get((pid, gen))

    def _fresh_comm(self, pid: int, kernel_comm: str, flow_created: float) -> str:
        """The kernel's comm for a flow, unless the flow predates the pid's current process
        (the kernel keeps the comm a flow was created with, maybe by an earlier owner of the pid)."""
        info = self.procs.get(pid)
        if info is not None and info.started and flow_created and flow_created < info.started - START_SLACK_S:
            return info.comm
        return printable(kernel_comm)

    def process_of(self, tid: int) -> int:
        """The process (tgid) of a task id, as far as /proc told the collector."""
        info = self.procs.get(tid)
        return info.tgid if info and info.tgid else tid

    def row_key(self, key: FlowKey) -> FlowRowKey:
        """Which flows-table row a kernel flow key belongs to."""
        via = key.origin()
        if via == OVERFLOW:  # no room in the kernel's map: by signal only
            return FlowRowKey(0, 0, key.sig, OVERFLOW)
        if key.result in (Result.failed, Result.no_signal):
            target = key.target_pid  # what was asked for: a pid, -pgid, or a pidfd
            if key.ns_local and target > 0:  # a pid of the sender's namespace: the host's where known
                info = self.procs.get(key.sender_pid)
                host = info.ns_pids.get(target) if info else None
                if host:
                    return self._keyed(key.sender_pid, host, key.sig, via)
                return replace(self._keyed(key.sender_pid, target, key.sig, via), ns_of=key.sender_pid, target_gen=0)
            if key.targets_pidfd():
                pid = self.procs.get(key.sender_pid)
                resolved = pid.pidfds.get(target) if pid else None
                if resolved:
                    return self._keyed(key.sender_pid, resolved, key.sig, via)
                return self._keyed(key.sender_pid, 0, key.sig, via, pidfd=target)
            if key.target_tgid:
                target = key.target_tgid
            elif target > 0:
                target = self.process_of(target)
            return self._keyed(key.sender_pid, target, key.sig, via)
        target = key.target_tgid or self.process_of(key.target_pid)
        return self._keyed(key.sender_pid, target, key.sig, via, spoofed=bool(key.spoofed))

    def _keyed(
        self, sender: int, target: int, sig: int, via: str, pidfd: int = -1, spoofed: bool = False
    ) -> FlowRowKey:
        gen = self.generation.get
        return FlowRowKey(sender, target, sig, via, pidfd, gen(sender, 0) if sender else 0, gen(target, 0), spoofed)

    def _flow_row(self, key: FlowKey, delta: FlowDelta) -> FlowRow:
        rkey = self.row_key(key)
        row = self.flows.get(rkey)
        if row is None:
            row = FlowRow(rkey, syscall=key.syscall)
            self.flows[rkey] = row
            for pid in (rkey.sender_pid, rkey.target_pid):
                if pid > 0 and delta.first_ts and pid not in self._rows_since:
                    self._rows_since[pid] = delta.first_ts
                    if len(self._rows_since) > MAX_PROCS:
                        self._rows_since.popitem(last=False)
        if delta.claimed is not None:
            row.claimed = delta.claimed
        if delta.sender_comm and key.sender_pid:
            row.sender_comm = self._fresh_comm(rkey.sender_pid, delta.sender_comm, delta.first_ts)
        if delta.target_comm:
            row.target_comm = self._fresh_comm(rkey.target_pid, delta.target_comm, delta.first_ts)
        info = self.proc_of(rkey.sender_pid, rkey.sender_gen) if rkey.sender_pid else None
        # A sender that exec'd since: its name when it sent, and now.
        row.sender_comm_now = info.comm if info and info.comm != row.sender_comm else ""
        if not row.sender_container:
            # The kernel's cgroup when the flow began; /proc's where the kernel had none.
            cgroup = delta.sender_cgroup if delta.sender_cgroup not in ("", "/") else (info.cgroup if info else "")
            row.sender_container = container_of(cgroup).label
        target = self.proc_of(rkey.target_pid, rkey.target_gen) if rkey.target_pid > 0 and not rkey.ns_of else None
        if target is not None and not row.target_container:
            row.target_container = container_of(target.cgroup).label
        if not row.target_comm and rkey.target_pid > 0:
            info = self.procs.get(rkey.target_pid)
            row.target_comm = info.comm if info else ""
        if not row.sender_comm and rkey.sender_pid:
            info = self.procs.get(rkey.sender_pid)
            row.sender_comm = info.comm if info else ""
        return row

    def _apply_threads(self, threads: list[ThreadDelta], interval: float) -> None:
        per_process: dict[int, list[int]] = {}
        for t in threads:
            row = self.sigreturns.get(t.tgid)
            if row is None:
                row = self.sigreturns[t.tgid] = SigreturnRow(t.tgid)
            # The kernel's comm is the thread's when it was first seen (maybe
            # before an exec); /proc's, when the collector read it, is newer.
            info = self.procs.get(t.tgid)
            if info and info.comm:
                row.comm = info.comm
            elif t.tid == t.tgid or not row.comm:
                row.comm = printable(t.comm)
            row.sigreturns += t.sigreturns
            row.handler_deliveries += t.handler_deliveries
            row.deliveries += t.deliveries
            if t.unmatched is not None:
                row.unmatched += t.unmatched
                self._unmatched_counted = True
            row.last_ts = max(row.last_ts, t.last_ts)
            acc = per_process.setdefault(t.tgid, [0, 0])
            acc[0] += t.sigreturns
            acc[1] += t.handler_deliveries
        for pid in self._rated_sigreturns - per_process.keys():
            row = self.sigreturns.get(pid)
            if row:
                row.rate = row.handler_rate = 0.0
                row.history.append(0)
        for pid, (returns, handled) in per_process.items():
            row = self.sigreturns[pid]
            row.rate = returns / interval
            row.handler_rate = handled / interval
            row.history.append(returns)
        self._rated_sigreturns = set(per_process)

    def _apply_signalfd(self, state: SignalfdState) -> None:
        key = (state.pid, state.fd)
        row = self.signalfds.get(key)
        if row is None or (state.created_ts and state.created_ts != row.created_ts):
            row = self.signalfds[key] = SignalfdRow(state.pid, state.fd, created_ts=state.created_ts)
        if not row.history or row.history[-1][1] != state.mask:
            row.history.append((state.last_ts, state.mask))
        row.comm = printable(state.comm)
        row.mask = state.mask
        row.flags = state.flags
        row.calls += state.calls
        row.last_ts = state.last_ts

    def apply_events(self, events: Sequence[SignalEvent]) -> None:
        """Attach events to their rows and match deliveries to generations, for every event.

        A storm brings 100,000 events a second: each is looked at through
        its HOT_FIELDS tuple, and only those a row keeps (its last
        EVENTS_PER_ROW) become SignalEvents, once, at the end.
        """
        if not events:
            return
        self.events_received += len(events)
        # per distinct kernel key: where its events are kept, and the target process
        rows: dict[tuple, tuple[deque[_Slot] | None, int]] = {}
        kept: dict[int, tuple[FlowRow | SigreturnRow, deque[_Slot]]] = {}
        pending = self._pending
        deaths: list[int] = []
        hots, ns_per_unit = hot_events(events)
        for index, hot in enumerate(hots):
            ts, kind, sender, _tid, target_pid, target_tgid, sig, code, result, ret, syscall, spoofed, ns_local = hot
            if kind in _FLOW_EVENTS:
                ident = (sender, target_pid, target_tgid, sig, code, ret, syscall, result, spoofed, ns_local)
                found = rows.get(ident)
                if found is None:
                    row, process = self._event_row(ident)
                    found = rows[ident] = (self._kept_for(kept, row) if row else None, process)
                keep, process = found
                slot = [index, ts, None, None, 0]
                if keep is not None:
                    keep.append(slot)
                if kind == _GENERATE and result == _DELIVERED:
                    queue = pending.get((process, sig))
                    if queue is None:
                        queue = pending[(process, sig)] = deque(maxlen=PENDING_PER_KEY)
                        if len(pending) > MAX_PENDING_DELIVERIES:
                            pending.popitem(last=False)
                    queue.append(slot)
            elif kind == _DELIVER:
                queue = pending.get((target_tgid, sig))
                if queue:
                    generated = queue.popleft()
                    latency = generated[_LATENCY] = max(0, round((ts - generated[_TS]) * ns_per_unit))
                    if self.on_latency is not None:
                        self.on_latency(sig, latency)
                    generated[_TAKEN_BY] = _tid  # the thread that took it (a group signal: any of them)
                    if generated[_EVENT] is not None:
                        generated[_EVENT].latency_ns = latency
                        generated[_EVENT].taken_tid = _tid
            elif kind == _DEATH:
                deaths.append(index)
            elif kind == _SIGACTION:
                event = events[index]
                self.disposition_changes[(sender, sig)] = (event.ts, event.handler)
                self.disposition_changes.move_to_end((sender, sig))
                while len(self.disposition_changes) > MAX_PROCS:
                    self.disposition_changes.popitem(last=False)
            elif kind == _OOM:
                self._oom_victims[sender] = (events[index].ts, events[index].info_value)
                while len(self._oom_victims) > MAX_OOM_VICTIMS:
                    self._oom_victims.popitem(last=False)
            elif kind == _UNMATCHED_SIGRETURN:
                srow = self.sigreturns.get(sender)
                if srow is None:
                    srow = self.sigreturns[sender] = SigreturnRow(sender)
                if not self._unmatched_counted:  # an old recording: only the events say
                    srow.unmatched += 1
                self._kept_for(kept, srow).append([index, ts, None, None, 0])
        for index in deaths:
            self.deaths.append(self._death(events[index]))
            self.deaths_seen += 1
        for row, slots in kept.values():
            for slot in slots:
                event = slot[_EVENT] = events[slot[_INDEX]]
                event.latency_ns = slot[_LATENCY]
                event.taken_tid = slot[_TAKEN_BY]
                event.comm, event.target_comm = printable(event.comm), printable(event.target_comm)
                if not row.events:
                    row.events = deque(maxlen=EVENTS_PER_ROW)
                row.events.append(event)
            if isinstance(row, SigreturnRow) and not row.comm and slots:
                row.comm = slots[-1][_EVENT].comm

    def _death(self, e: SignalEvent) -> Death:
        """Who or what killed a process: the flows that reached it with that signal, newest first."""
        pid, sig = e.sender_pid, e.sig
        info = self.procs.get(pid)
        comm = printable(e.comm) or (info.comm if info else "")
        rows = [r for r in self.flows.values() if r.key.target_pid == pid and r.key.sig == sig and r.count]
        rows.sort(key=lambda r: r.last_ts, reverse=True)
        cause, sender = "not seen (sent before sigtop attached, or a SIGKILL fanned out to its threads)", 0
        kind = "unknown"
        oom = self._oom_victims.get(pid)
        if sig == signal.SIGKILL and oom is not None and 0 <= e.ts - oom[0] < OOM_TO_DEATH_S:
            cause, kind = f"the OOM killer (anon-rss {oom[1] / 1024:.0f} MiB when chosen)", "oom"
            rows = []
        elif rows and rows[0].key.via == "pdeathsig":
            parent = rows[0].key.sender_pid
            cause = f"its parent {parent} {rows[0].sender_comm} exited (PR_SET_PDEATHSIG)"
            kind, sender = "parent-death", parent
            rows = []
        if rows:
            row = rows[0]
            sender = row.key.sender_pid
            if sender == pid:
                cause = "itself (abort)" if sig == signal.SIGABRT else f"itself ({signame(sig)})"
                kind = "self"
            elif sender:
                cause = f"{sender} {row.sender_comm} via {row.key.via}"
                kind = "sender"
                term = [
                    r
                    for r in self.flows.values()
                    if sig == signal.SIGKILL
                    and r.key.sender_pid == sender
                    and r.key.target_pid == pid
                    and r.key.sig == signal.SIGTERM
                    and r.count
                    and e.ts - r.first_ts < ESCALATION_S
                ]
                if term:
                    cause += ", after SIGTERM (stop timeout)"
                    kind = "stop-timeout"
            elif row.key.via == "fault":
                cause = f"fault ({si_code_name(sig, max(row.codes, key=row.codes.__getitem__))})"
                kind = "fault"
            elif sig == signal.SIGKILL:
                cause = "the kernel (SI_KERNEL: the OOM killer, or another kernel kill)"
                kind = "kernel"
            else:
                cause = f"the kernel ({row.key.via})"
                kind = "kernel"
        # The kernel measured its life (ns, from task->start_time); /proc's start time otherwise.
        lifetime = e.info_value / 1e9 if e.info_value else (e.ts - info.started if info and info.started else None)
        return Death(
            pid=pid,
            comm=comm,
            sig=sig,
            core=e.code == CLD_DUMPED,
            ts=e.ts,
            parent=e.target_tgid,
            cause=cause,
            cause_kind=kind,
            sender_pid=sender,
            lifetime_s=lifetime,
            cgroup=self._cgroup_paths.get(e.handler, "") or (info.cgroup if info else ""),
        )

    @staticmethod
    def _kept_for(kept: dict, row: FlowRow | SigreturnRow) -> deque[_Slot]:
        entry = kept.get(id(row))
        if entry is None:
            entry = kept[id(row)] = (row, deque(maxlen=EVENTS_PER_ROW))
        return entry[1]

    def _event_row(self, ident: tuple) -> tuple[FlowRow | None, int]:
        """The flow row an event belongs to, and the process its signal goes to.

        `ident` is the event's fields in event_flow_key's order (sender, target_pid,
        target_tgid, sig, code, ret, syscall, result, spoofed, ns_local)."""
        key = event_flow_key(*ident)
        target_pid, target_tgid = ident[1], ident[2]
        return self.flows.get(self.row_key(key)), target_tgid or self.process_of(target_pid)

    def _evict(self) -> None:
        for table in (self.flows, self.sigreturns, self.signalfds):
            excess = len(table) - self.max_rows
            if excess > 0:
                oldest = sorted(table, key=lambda k: table[k].last_ts)[:excess]
                for k in oldest:
                    del table[k]
                self.evicted_rows += excess
        rows = [*self.flows.values(), *self.sigreturns.values()]
        kept = sum(len(r.events) for r in rows)
        if kept > MAX_KEPT_EVENTS:
            for row in sorted(rows, key=lambda r: r.last_ts):
                kept -= len(row.events)
                self.events_trimmed += len(row.events)
                row.events = ()
                if kept <= MAX_KEPT_EVENTS * 3 // 4:
                    break

    # ---- user actions ----------------------------------------------------

    def clear(self) -> None:
        """Forget every count (signalfd state stays: it is state, not a count)."""
        self.flows.clear()
        self.sigreturns.clear()
        self.deaths.clear()
        self.alerts.clear()
        for row in self.signalfds.values():
            row.calls = 0
        self._pending.clear()
        self._rated_flows.clear()
        self._rated_sigreturns.clear()
        self.total_signals = 0
        self.signals_per_sec = 0.0
        self.duration_s = 0.0
        self.stats = KernelStats()
