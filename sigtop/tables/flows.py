"""The flows table: sender -> target, signal, how, with every result and what became of the queued.

One module for the table: its row, how a batch folds into it, eviction, its
selection, its columns, its JSON, its detail and its key.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from rich.text import Text

from sigtop.containers import container_of
from sigtop.lru import BoundedLRU
from sigtop.names import (
    GENERATED_RESULTS,
    SI_TIMER,
    EventKind,
    Result,
    Syscall,
    errno_name,
    pidfd_flag_names,
    printable,
    result_word,
    si_code_name,
    signame,
    syscall_name,
    user_name,
)
from sigtop.reasons import default_action, explain_row, target_disposition
from sigtop.tables.base import (
    Column,
    Detail,
    DetailTable,
    ExportOptions,
    SignalModel,
    TableMetrics,
    TableSpec,
    TableState,
    View,
    by,
    evict_fairly,
    fmt_number,
    num,
    process_text,
)
from sigtop.timefmt import age, clock, duration
from sigtop.wire import Batch, FlowDelta, FlowKey, LatencyHistogram, SignalEvent, latency_bucket_bounds

if TYPE_CHECKING:
    from sigtop.filters import FlowFilter
    from sigtop.registry import ProcessRegistry

EVENTS_PER_ROW = 200
OVERFLOW = "overflow"  # FlowRowKey.via of the rows counting what did not fit the kernel's map
MAX_ASKED_PIDS = 20
# What evicted rows are folded into, by (owner uid, name): bounded however many names churn.
MAX_EVICTED_USERS = 100  # beyond: OTHER_USERS
MAX_EVICTED_NAMES = 20  # per user; beyond: OTHER_NAMES
KERNEL_UID, OTHER_USERS, OTHER_NAMES = -1, -2, "(other names)"


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


@dataclass(slots=True)
class EvictedFlows:
    """Rows evicted to keep the table bounded, folded into their owner's and name's totals."""

    rows: int = 0
    signals: int = 0  # everything those rows had counted (FlowRow.attempts)
    last_ts: float = 0.0


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
    events: list[SignalEvent] | tuple[()] = ()  # its last EVENTS_PER_ROW, oldest first
    sender_comm_now: str = ""  # the sender's comm in /proc now, where it differs (it exec'd)
    claimed: tuple[int, int] | None = None  # spoofed: the (si_pid, si_uid) the siginfo claimed
    sender_container: str = ""  # containers.Container.label of each end ("" on the host)
    target_container: str = ""
    # The fates of its queued signals (where the source follows them: FlowTable.fates_followed).
    taken: int = 0  # taken for action: a handler, the default action, or ignored when taken
    read: int = 0  # left the pending list with no delivery: sigwait, a signalfd read, a flush
    discarded: int = 0  # still pending when the target exited
    untracked: int = 0  # no room to follow them
    suppressed: int = 0  # taken in a ptrace signal-delivery-stop, the tracee resumed without it
    suppressed_by: int = 0  # by this tracer (the last one)
    pending: int = 0  # queued and none of the above yet (state)
    pending_since: float = 0.0  # when the oldest of those was queued
    latency: LatencyHistogram | None = None  # generate to take (or sigwait), every one
    fates: bool = False  # the fields above are followed (else unknown: no BTF, or an old recording)
    # Whose row it is, for eviction: the sender's real uid; a kernel-raised signal's, its target's
    # (KERNEL_UID while unknown). One user's churn evicts that user's rows, not another's.
    owner_uid: int = KERNEL_UID
    # A row the view made (fold_children): the rows it sums, one per sender process. () for the
    # model's own rows.
    members: tuple[FlowRow, ...] = ()

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


# ---- folding -------------------------------------------------------------------------------


class FlowTable(TableState):
    """The flows table's rows and how batches fold into them."""

    def __init__(self) -> None:
        self.rows: dict[FlowRowKey, FlowRow] = {}
        self._rated: set[FlowRowKey] = set()
        self._with_pending: set[FlowRowKey] = set()  # rows with pending > 0
        self.fates_followed = False  # the source follows queued signals to their end
        self.evicted: dict[tuple[int, str], EvictedFlows] = {}  # (owner uid, comm) -> totals
        self._evicted_names: Counter[int] = Counter()  # owner uid -> its names in `evicted`
        self.total_signals = 0
        self.signals_per_sec = 0.0

    def fold(self, batch: Batch, model: SignalModel) -> None:
        """A batch's flow deltas (counts add up, rates cover its interval) and what is pending now."""
        registry = model.registry
        self.fates_followed = self.fates_followed or batch.pending is not None
        interval = batch.interval_s if batch.interval_s > 0 else 1.0
        generated = 0
        moved: Counter[FlowRowKey] = Counter()
        for delta in batch.flows:
            row = self._row(delta.key, delta, registry)
            row.fates = self.fates_followed
            row.results[delta.key.result] += delta.count
            if delta.key.result == Result.failed:
                row.errors[delta.key.err] += delta.count
            row.codes[delta.key.code] += delta.count
            if delta.first_ts:
                row.first_ts = min(row.first_ts, delta.first_ts) if row.first_ts else delta.first_ts
            row.last_ts = max(row.last_ts, delta.last_ts)
            if delta.taken or delta.read or delta.discarded or delta.untracked or delta.suppressed:
                row.taken += delta.taken
                row.read += delta.read
                row.discarded += delta.discarded
                row.untracked += delta.untracked
                row.suppressed += delta.suppressed
                row.suppressed_by = delta.suppressed_by or row.suppressed_by
            if delta.latency is not None:
                if row.latency is None:
                    row.latency = LatencyHistogram()
                row.latency.add(delta.latency)
            if delta.key.result in GENERATED_RESULTS:
                moved[row.key] += delta.count
                generated += delta.count
        for key in self._rated - moved.keys():
            if key in self.rows:
                self.rows[key].rate = 0.0
        for key, n in moved.items():
            self.rows[key].rate = n / interval
        self._rated = set(moved)
        self.total_signals += generated
        self.signals_per_sec = generated / interval
        if batch.pending is not None:
            self._fold_pending(batch, registry)

    def _fold_pending(self, batch: Batch, registry: ProcessRegistry) -> None:
        """What is pending now, by row (state: it replaces the last batch's)."""
        for key in self._with_pending:
            row = self.rows.get(key)
            if row is not None:
                row.pending, row.pending_since = 0, 0.0
        rows = set()
        for p in batch.pending or ():
            row = self.rows.get(self.row_key(p.key, registry))
            if row is None:  # not seen counted yet (a recording cut mid-way): nothing to add it to
                continue
            row.pending += p.count
            row.pending_since = min(row.pending_since, p.since) if row.pending_since else p.since
            rows.add(row.key)
        self._with_pending = rows

    def row_key(self, key: FlowKey, registry: ProcessRegistry) -> FlowRowKey:
        """Which row a kernel flow key belongs to."""
        via = key.origin()
        if via == OVERFLOW:  # no room in the kernel's map: by signal only
            return FlowRowKey(0, 0, key.sig, OVERFLOW)
        if key.result in (Result.failed, Result.no_signal):
            target = key.target_pid  # what was asked for: a pid, -pgid, or a pidfd
            if key.ns_local and target > 0:  # a pid of the sender's namespace: the host's where known
                info = registry.procs.get(key.sender_pid)
                host = info.ns_pids.get(target) if info else None
                if host:
                    return _keyed(registry, key.sender_pid, host, key.sig, via)
                return replace(
                    _keyed(registry, key.sender_pid, target, key.sig, via), ns_of=key.sender_pid, target_gen=0
                )
            if key.targets_pidfd():
                info = registry.procs.get(key.sender_pid)
                resolved = info.pidfds.get(target) if info else None
                if resolved:
                    return _keyed(registry, key.sender_pid, resolved, key.sig, via)
                return _keyed(registry, key.sender_pid, 0, key.sig, via, pidfd=target)
            if key.target_tgid:
                target = key.target_tgid
            elif target > 0:
                target = registry.process_of(target)
            return _keyed(registry, key.sender_pid, target, key.sig, via)
        target = key.target_tgid or registry.process_of(key.target_pid)
        return _keyed(registry, key.sender_pid, target, key.sig, via, spoofed=bool(key.spoofed))

    def _row(self, key: FlowKey, delta: FlowDelta, registry: ProcessRegistry) -> FlowRow:
        rkey = self.row_key(key, registry)
        row = self.rows.get(rkey)
        if row is None:
            row = FlowRow(rkey, syscall=key.syscall)
            self.rows[rkey] = row
            for pid in (rkey.sender_pid, rkey.target_pid):
                registry.first_row(pid, delta.first_ts)
        if row.owner_uid == KERNEL_UID:
            row.owner_uid = _owner(rkey, delta, registry)
        if delta.claimed is not None:
            row.claimed = delta.claimed
        if delta.sender_comm and key.sender_pid:
            row.sender_comm = registry.fresh_comm(rkey.sender_pid, delta.sender_comm, delta.first_ts)
        if delta.target_comm:
            row.target_comm = registry.fresh_comm(rkey.target_pid, delta.target_comm, delta.first_ts)
        info = registry.proc_of(rkey.sender_pid, rkey.sender_gen) if rkey.sender_pid else None
        # A sender that exec'd since: its name when it sent, and now.
        row.sender_comm_now = info.comm if info and info.comm != row.sender_comm else ""
        if not row.sender_container:
            # The kernel's cgroup when the flow began; /proc's where the kernel had none.
            cgroup = delta.sender_cgroup if delta.sender_cgroup not in ("", "/") else (info.cgroup if info else "")
            row.sender_container = container_of(cgroup).label
        target = registry.proc_of(rkey.target_pid, rkey.target_gen) if rkey.target_pid > 0 and not rkey.ns_of else None
        if target is not None and not row.target_container:
            row.target_container = container_of(target.cgroup).label
        if not row.target_comm and rkey.target_pid > 0:
            found = registry.procs.get(rkey.target_pid)
            row.target_comm = found.comm if found else ""
        if not row.sender_comm and rkey.sender_pid:
            found = registry.procs.get(rkey.sender_pid)
            row.sender_comm = found.comm if found else ""
        return row

    def event_row(self, flow: tuple, registry: ProcessRegistry) -> tuple[FlowRow | None, int]:
        """The row a detail event's flow key (its fields as a tuple) was counted in, and the
        process its signal went to."""
        key = FlowKey(*flow)
        return self.rows.get(self.row_key(key, registry)), key.target_tgid or registry.process_of(key.target_pid)

    def evict(self, max_rows: int) -> int:
        """Drop rows beyond max_rows from the users holding most (least recently moved first), so
        one user's churn cannot push out another's evidence; fold each into its owner's totals.
        How many went."""
        taken = evict_fairly(self.rows, max_rows, lambda r: r.owner_uid, lambda r: r.last_ts)
        for row in taken:
            self._fold_evicted(row)
        return len(taken)

    def _fold_evicted(self, row: FlowRow) -> None:
        uid = row.owner_uid
        if uid not in self._evicted_names and len(self._evicted_names) >= MAX_EVICTED_USERS:
            uid = OTHER_USERS
        name = (row.sender_comm if row.key.sender_pid else row.target_comm) or "?"
        if (uid, name) not in self.evicted and self._evicted_names[uid] >= MAX_EVICTED_NAMES:
            name = OTHER_NAMES
        totals = self.evicted.get((uid, name))
        if totals is None:
            totals = self.evicted[(uid, name)] = EvictedFlows()
            self._evicted_names[uid] += 1
        totals.rows += 1
        totals.signals += row.attempts
        totals.last_ts = max(totals.last_ts, row.last_ts)

    def clear(self) -> None:
        self.rows.clear()
        self.evicted.clear()
        self._evicted_names.clear()
        self._rated.clear()
        self._with_pending.clear()
        self.total_signals = 0
        self.signals_per_sec = 0.0


def evicted_json(table: FlowTable) -> list[dict[str, Any]]:
    """The evicted rows' totals, by owner and name, most signals first."""
    return [
        {"uid": uid, "user": user_name(uid), "comm": name, "rows": e.rows, "signals": e.signals,
         "last_ts": round(e.last_ts, 6)}
        for (uid, name), e in sorted(table.evicted.items(), key=lambda item: (-item[1].signals, item[0]))
    ]  # fmt: skip


def evicted_summary(evicted: list[dict[str, Any]], most: int = 5) -> str:
    """'nobody sh 5,980 rows (11,960 signals), ...': the evicted totals with the most signals."""
    parts = [f"{e['user']} {e['comm']} {e['rows']:,} rows ({e['signals']:,} signals)" for e in evicted[:most]]
    if len(evicted) > most:
        parts.append(f"and {len(evicted) - most} more")
    return ", ".join(parts)


def _owner(rkey: FlowRowKey, delta: FlowDelta, registry: ProcessRegistry) -> int:
    """Whose row: the sender's uid as the kernel saw it, else as /proc said; a kernel-raised
    signal's target's (its fault, its child, its timer)."""
    if delta.sender_uid >= 0:
        return delta.sender_uid
    pid, gen = (rkey.sender_pid, rkey.sender_gen) if rkey.sender_pid else (rkey.target_pid, rkey.target_gen)
    info = registry.proc_of(pid, gen) if pid > 0 else None
    return info.uid if info is not None and info.uid >= 0 else KERNEL_UID


def _keyed(
    registry: ProcessRegistry, sender: int, target: int, sig: int, via: str, pidfd: int = -1, spoofed: bool = False
) -> FlowRowKey:
    gen = registry.gen
    return FlowRowKey(sender, target, sig, via, pidfd, gen(sender) if sender else 0, gen(target), spoofed)


# ---- selection -------------------------------------------------------------------------------


def in_state(row: FlowRow, state: str) -> bool:
    """What `is:STATE` asks of a flow (filters.STATES)."""
    r = row.results
    if state == "failed":
        return row.failed > 0
    if state == "fatal":
        return row.key.sig > 0 and default_action(row.key.sig).startswith("terminate")
    if state == "noeffect":
        return bool(
            r[Result.ignored] or r[Result.already_pending] or r[Result.overflow_fail] or row.failed
            or (row.fates and (row.pending or row.discarded or row.suppressed))
        )  # fmt: skip
    return False


def select(_model: SignalModel, row: FlowRow, flt: FlowFilter) -> bool:
    key = row.key
    if flt.states and not all(in_state(row, s) for s in flt.states):
        return False
    return flt.matches(
        (key.sender_pid, key.target_pid),
        (row.sender_comm, row.sender_comm_now, row.target_comm),
        key.sig,
        (row.sender_container, row.target_container),
    )


# ---- cells -----------------------------------------------------------------------------------


def _sender(row: FlowRow) -> str:
    if row.key.via == OVERFLOW:
        return "*"
    if row.members:
        senders = {m.key.sender_pid for m in row.members}
        return str(next(iter(senders)) or "-") if len(senders) == 1 else f"{len(senders)} procs"
    return str(row.key.sender_pid) if row.key.sender_pid else "-"


def sender_comm_text(row: FlowRow) -> Text:
    if row.key.via == OVERFLOW:
        return Text("[map full]", style="bold red")
    if row.members:  # folded or grouped: their one name, or how many
        names = {m.sender_comm if m.key.sender_pid else "[kernel]" for m in row.members}
        return Text(next(iter(names))) if len(names) == 1 else Text(f"{len(names)} names", style="italic")
    if not row.key.sender_pid:
        return Text("[kernel]", style="italic")
    if row.sender_comm_now:  # it exec'd: the name it sent under, then its name now
        return Text(f"{row.sender_comm}→{row.sender_comm_now}")
    return Text(row.sender_comm)


def target_text(row: FlowRow) -> str:
    k = row.key
    if row.members and len({(m.key.target_pid, m.key.target_gen) for m in row.members}) > 1:
        return f"{len({m.key.target_pid for m in row.members})} procs"
    if k.via == OVERFLOW:
        return "*"
    if k.target_pid == 0:  # failed sends to made-up pids, counted together (the drill-down lists them)
        return "?"
    if k.ns_of:  # a pid of the sender's pid namespace (a container's), with no host pid found
        return f"ns:{k.target_pid}"
    if k.pidfd >= 0:
        return f"pidfd {k.pidfd}"
    if k.target_pid < 0:
        return f"pgrp {-k.target_pid}"
    return str(k.target_pid)


def _signal_text(row: FlowRow) -> str:
    if row.members and len({m.key.sig for m in row.members}) > 1:
        return f"{len({m.key.sig for m in row.members})} sigs"
    return signame(row.key.sig)


def target_comm_text(row: FlowRow) -> Text:
    if row.members and len({m.target_comm for m in row.members}) > 1:
        return Text(f"{len({m.target_comm for m in row.members})} names", style="italic")
    return Text(row.target_comm)


def _via(row: FlowRow) -> Text:
    if row.members and len({m.key.via for m in row.members}) > 1:
        return Text(f"{len({m.key.via for m in row.members})} ways", style="italic")
    if row.key.spoofed:  # a forged si_pid/si_uid: never hidden behind the syscall's name
        return Text(f"{row.key.via} SPOOFED", style="bold red")
    return Text(row.key.via)


def _containers(row: FlowRow) -> Text:
    s, t = row.sender_container, row.target_container
    if s == t:
        return Text(s)
    return Text(f"{s or 'host'}→{t or 'host'}")


def _failed(row: FlowRow) -> str:
    return " ".join(f"{errno_name(e)}:{n}" for e, n in sorted(row.errors.items()))


def _fate(get: Any, style: str = "") -> Any:
    """A fate count; '-' where fates are not followed (no BTF, an old recording) or nothing was queued."""

    def cell(row: FlowRow, _view: View) -> Text:
        if not row.fates or not row.queued:
            return Text("-", justify="right", style="dim")
        n = get(row)
        return Text(fmt_number(n), style=style if n else "", justify="right")

    return cell


def _p99(row: FlowRow) -> int:
    return row.latency.quantile(0.99) if row.latency is not None else 0


def _p99_cell(row: FlowRow, _view: View) -> Text:
    if row.latency is None or not row.latency.count:
        return Text("-", justify="right", style="dim")
    return Text(duration(_p99(row)), justify="right")


def reason(row: FlowRow, view: View) -> str:
    """Why the row's signals did not (all) take effect, short (derived, once per row per view)."""
    return view.derived("reason", row, lambda: explain_row(view.model.registry, row, view.now).short)


COLUMNS = (
    Column("sender", "SENDER", by(lambda r: r.key.sender_pid), lambda r, _v: Text(_sender(r), justify="right"),
           True, 100),
    Column("sender_comm", "COMM", by(lambda r: r.sender_comm if r.key.sender_pid else ""),
           lambda r, v: _in_tree(sender_comm_text(r), v.known(TREE_DEPTH, r, 0)), priority=89, min_width=8),
    Column("target", "TARGET", by(lambda r: r.key.target_pid), lambda r, _v: Text(target_text(r), justify="right"),
           True, 100),
    Column("target_comm", "COMM", by(lambda r: r.target_comm), lambda r, _v: target_comm_text(r), priority=89,
           min_width=8),
    Column("signal", "SIGNAL", by(lambda r: r.key.sig), lambda r, _v: _signal_text(r), priority=95),
    Column("via", "VIA", by(lambda r: (r.key.via, r.key.spoofed)), lambda r, _v: _via(r), priority=76),
    Column("count", "COUNT", by(lambda r: r.count), num(lambda r: r.count), True, 90),
    Column("rate", "RATE/s", by(lambda r: r.rate), num(lambda r: r.rate), True, 30, live_only=True),
    Column("last", "LAST", by(lambda r: r.last_ts), lambda r, v: Text(age(v.now, r.last_ts), justify="right"),
           True, 20, live_only=True),
    # Queued (the kernel's TRACE_SIGNAL_DELIVERED), then what became of them.
    Column("queued", "QUEUED", by(lambda r: r.queued), num(lambda r: r.queued), True, 85),
    Column("taken", "TAKEN", by(lambda r: r.received), _fate(lambda r: r.received), True, 52),
    Column("pending", "PEND", by(lambda r: r.pending), _fate(lambda r: r.pending, "bold yellow"), True, 86),
    Column("discarded", "DISC", by(lambda r: r.discarded), _fate(lambda r: r.discarded, "red"), True, 50),
    Column("p99", "P99", by(_p99), _p99_cell, True, 35),
    Column("ignored", "IGN", by(lambda r: r.results[Result.ignored]), num(lambda r: r.results[Result.ignored]),
           True, 85),
    Column("merged", "MERGED", by(lambda r: r.results[Result.already_pending]),
           num(lambda r: r.results[Result.already_pending]), True, 72),
    Column("lost", "LOST", by(lambda r: r.results[Result.overflow_fail]),
           num(lambda r: r.results[Result.overflow_fail], lambda r: "red" if r.results[Result.overflow_fail] else ""),
           True, 85),
    Column("failed", "FAILED", by(lambda r: r.failed), lambda r, _v: Text(_failed(r), style="red"), True, 80),
    # Why the signals did not (all) take effect: blocked and pending, ignored, dropped by an init, ...
    Column("reason", "REASON", reason, lambda r, v: Text(reason(r, v), style="yellow"), priority=88, min_width=12),
    Column("probes", "PROBES", by(lambda r: r.results[Result.no_signal]), num(lambda r: r.results[Result.no_signal]),
           True, 10),
    # Containers or services of both ends ("" on the host): the first to hide when narrow.
    Column("container", "CONTAINER", by(lambda r: (r.sender_container, r.target_container)),
           lambda r, _v: _containers(r), priority=5),
)  # fmt: skip


# ---- JSON ------------------------------------------------------------------------------------


def fates_json(row: FlowRow, followed: bool) -> dict[str, Any]:
    """What became of the flow's queued signals ("delivered" in results means queued); None where the
    source did not follow them (no BTF, or a recording made without). `queued` itself is the
    kernel's result, known either way."""
    if not followed:
        return {"queued": row.queued} | dict.fromkeys(
            (
                "taken",
                "read",
                "discarded",
                "suppressed",
                "suppressed_by",
                "pending",
                "pending_since",
                "untracked",
                "latency_ns",
            )
        )
    latency = row.latency
    return {
        "queued": row.queued,
        "taken": row.taken,
        "read": row.read,
        "discarded": row.discarded,
        "suppressed": row.suppressed,  # by a tracer (ptrace): taken in its stop, resumed without it
        "suppressed_by": row.suppressed_by or None,
        "pending": row.pending,
        "pending_since": round(row.pending_since, 6) if row.pending else None,
        "untracked": row.untracked,
        # Every take timed in the kernel, in half-octave buckets: p50/p99 are their bucket's upper
        # bound (capped by the max), so within a third above the true value; max is exact.
        "latency_ns": None
        if latency is None or not latency.count
        else {
            "count": latency.count,
            "p50": latency.quantile(0.5),
            "p99": latency.quantile(0.99),
            "max": latency.max_ns,
            "buckets": [[*latency_bucket_bounds(i), n] for i, n in enumerate(latency.buckets) if n],
        },
    }


def container_json(cgroup: str) -> dict[str, str] | None:
    """Which container or service a cgroup names; None on the host."""
    found = container_of(cgroup)
    if not found.kind:
        return None
    doc = {"kind": found.kind, "name": found.name, "label": found.label}
    if found.pod:
        doc.update(pod=found.pod, runtime=found.runtime)
    return doc


def _user_json(proc: Any) -> dict[str, Any] | None:
    if proc is None or proc.uid < 0:
        return None
    return {"uid": proc.uid, "name": proc.user or None}


def asked_pids(row: FlowRow) -> list[int]:
    """The distinct pids a failed flow's sends asked for, newest first, from its detail events."""
    seen: dict[int, None] = {}
    for event in reversed(row.events):
        if event.target_pid not in seen:
            seen[event.target_pid] = None
            if len(seen) == MAX_ASKED_PIDS:
                break
    return list(seen)


def to_json(model: SignalModel, row: FlowRow) -> dict[str, Any]:
    key = row.key
    registry = model.registry
    sender = registry.proc_of(key.sender_pid, key.sender_gen)
    target = registry.proc_of(key.target_pid, key.target_gen)
    data: dict[str, Any] = {
        "sender_pid": key.sender_pid,
        "sender_comm": "[overflow]" if key.via == OVERFLOW else row.sender_comm if key.sender_pid else "[kernel]",
        "target_pid": key.target_pid if key.pidfd < 0 else None,
        "target_comm": row.target_comm,
        "sig": key.sig,
        "signame": signame(key.sig),
        "syscall": syscall_name(row.syscall),
        "origin": key.via,
        "count": row.count,
        "results": {r.name: row.results[r] for r in GENERATED_RESULTS},
        "no_signal": row.results[Result.no_signal],
        "errors": {errno_name(e): n for e, n in sorted(row.errors.items())},
        "first_ts": round(row.first_ts, 6),
        "last_ts": round(row.last_ts, 6),
    }
    data.update(fates_json(row, model.fates_followed))
    reasons = explain_row(registry, row, model.last_ts or time.time())
    data["reason"] = reasons.short or None  # why its signals did not all take effect; None: they did
    data["reasons"] = reasons.lines
    data["target_disposition"] = target_disposition(registry, row)
    if row.failed and key.target_pid == 0 and key.pidfd < 0:
        # Failed sends are counted per errno, not per pid asked for (a made-up pid is free);
        # the pids asked for are in their events, which the kernel sends in every mode (at most
        # MAX_ASKED_PIDS, newest first).
        data["target_pid"] = None
        data["asked_pids"] = asked_pids(row)
    # Who they are: each end's real user (uid and name, as /proc said; null for the kernel or a
    # process already gone), and the sender's name now where it exec'd since (the TUI's sh→sleep).
    data["sender_user"] = _user_json(sender) if key.sender_pid else None
    data["target_user"] = _user_json(target) if key.target_pid > 0 else None
    data["sender_comm_now"] = row.sender_comm_now or None
    # A process is its pid and its start time: a later process given the same pid is another row.
    data["sender_started"] = round(sender.started, 2) if sender and key.sender_pid and sender.started else None
    data["target_started"] = round(target.started, 2) if target and key.target_pid > 0 and target.started else None
    data["sender_cgroup"] = sender.cgroup if sender and key.sender_pid else None
    data["sender_container"] = container_json(sender.cgroup) if sender and key.sender_pid else None
    if data["sender_container"] is None and row.sender_container:  # gone from /proc: the kernel's cgroup named it
        data["sender_container"] = {"label": row.sender_container}
    data["target_cgroup"] = target.cgroup if target and key.target_pid > 0 else None
    data["target_container"] = container_json(target.cgroup) if target and key.target_pid > 0 else None
    if key.pidfd >= 0:
        data["target_pidfd"] = key.pidfd
    data["spoofed"] = key.spoofed
    # A pid of the sender's own pid namespace (a container's), not the host's: target_pid is that number.
    data["target_in_sender_namespace"] = bool(key.ns_of)
    data["sender_nspid"] = sender.nspid if sender and len(sender.nspid) > 1 else None
    data["target_nspid"] = target.nspid if target and len(target.nspid) > 1 else None
    if key.spoofed:
        claims = [e for e in row.events if e.has_info]
        # What the forged siginfo said (the latest event's, else the kernel's first), beside the real sender.
        claim = (claims[-1].info_pid, claims[-1].info_uid) if claims else row.claimed
        data["claimed"] = {"si_pid": claim[0], "si_uid": claim[1]} if claim else None
        data["sender_user"] = sender.user if sender else None
    return data


def json_order(row: FlowRow) -> tuple:
    return (-row.attempts, row.key.sender_pid, row.key.target_pid, row.key.sig)


# ---- detail ----------------------------------------------------------------------------------


def fates_text(row: FlowRow, now: float) -> Text:
    """What became of the flow's queued signals."""
    text = Text()
    if not row.queued:
        return text
    if not row.fates:
        text.append(
            f"queued {row.queued:,}: what became of them is not followed here (needs the kernel's BTF; "
            "'delivered' means only queued)\n",
            style="dim",
        )
        return text
    text.append(f"queued {row.queued:,}: ", style="bold")
    text.append(f"taken {row.taken:,} (a handler or the default action)  ")
    text.append(f"read or flushed {row.read:,} (sigwait, signalfd; SIGCONT/stop, SIG_IGN)  ")
    text.append(f"pending {row.pending:,}", style="bold yellow" if row.pending else "")
    if row.pending and row.pending_since:
        text.append(f" (oldest queued {age(now, row.pending_since)} ago)", style="bold yellow")
    text.append("  ")
    text.append(f"discarded at exit {row.discarded:,}", style="red" if row.discarded else "")
    if row.suppressed:
        text.append(
            f"  suppressed by tracer {row.suppressed_by} {row.suppressed:,}"
            " (taken in a ptrace stop, resumed without it)",
            style="bold red",
        )
    if row.untracked:
        text.append(f"  not followed {row.untracked:,} (no room in the kernel's map)", style="bold red")
    text.append("\n")
    return text


def latency_text(row: FlowRow, width: int = 40) -> Text:
    """Generate-to-take latency of every signal taken (or waited for): p50/p99/max and the histogram."""
    h = row.latency
    text = Text()
    if h is None or not h.count:
        return text
    text.append("latency, generate to take", style="bold")
    text.append(
        f"  ({h.count:,} timed in the kernel): p50 ≤ {duration(h.quantile(0.5))}  "
        f"p99 ≤ {duration(h.quantile(0.99))}  max {duration(h.max_ns)}\n"
    )
    most = max(h.buckets)
    for i, n in enumerate(h.buckets):
        if not n:
            continue
        low, high = latency_bucket_bounds(i)
        label = f"< {duration(high)}" if i < len(h.buckets) - 1 else f"≥ {duration(low)}"
        bar = "█" * max(1, round(width * n / most))
        text.append(f"  {label:>10} {bar} {n:,}\n")
    return text


def syscall_args(e: SignalEvent) -> str:
    sc = Syscall(e.syscall) if e.syscall in Syscall._value2member_map_ else None
    if sc is None or sc == Syscall.kernel:
        return "kernel"
    if sc == Syscall.pdeathsig:
        return "its parent exited (PR_SET_PDEATHSIG)"
    if sc == Syscall.cgroup_kill:
        return "a write of 1 to the target's cgroup.kill"
    if sc in (Syscall.kill, Syscall.rt_sigqueueinfo):
        args = f"{e.arg_pid}, {signame(e.sig)}"
    elif sc == Syscall.tkill:
        args = f"{e.arg_tid}, {signame(e.sig)}"
    elif sc in (Syscall.tgkill, Syscall.rt_tgsigqueueinfo):
        args = f"{e.arg_pid}, {e.arg_tid}, {signame(e.sig)}"
    elif sc == Syscall.pidfd_send_signal:
        flags = "|".join(pidfd_flag_names(e.flags)) or "0"
        args = f"pidfd {e.arg_pid}, {signame(e.sig)}, {'info' if e.has_info else 'NULL'}, {flags}"
    else:
        args = str(e.arg_pid)
    return f"{sc.name}({args})"


def si_value_text(e: SignalEvent) -> str:
    if e.has_info:
        return f"{e.info_value:#x}"
    if e.code == SI_TIMER:  # the kernel fills it from the timer, out of the tracepoint's sight
        return "n/a (timer: not on the tracepoint)"
    return "-"


def result_text(e: SignalEvent) -> str:
    if e.kind == EventKind.send_done:
        return f"failed {errno_name(-e.ret)}" if e.ret < 0 else "no signal (probe)"
    return Result(e.result).name if e.result in Result._value2member_map_ else str(e.result)


MAX_DETAIL_EVENTS = 200


def detail(model: SignalModel, r: FlowRow) -> Detail:
    if r.members:
        return _folded_detail(r)
    k = r.key
    registry = model.registry
    head = Text()
    head.append("Flow  ", style="bold")
    head.append(f"{k.sender_pid or 'kernel'} {r.sender_comm} -> ")
    head.append(f"{target_text(r)} {r.target_comm}  ")
    head.append(f"{signame(k.sig)} via {k.via}\n")
    # The kernel's DELIVERED means queued: said so here, as in the table.
    breakdown = "  ".join(
        f"{'queued (delivered)' if res == Result.delivered else res.name} {r.results[res]}"
        for res in Result
        if r.results[res]
    )
    head.append(f"count {r.count}  attempts {r.attempts}  {breakdown}\n")
    if k.spoofed:
        claims = [e for e in r.events if e.has_info]
        claim = f"si_pid {claims[-1].info_pid} si_uid {claims[-1].info_uid}" if claims else "(no detail events)"
        real = registry.proc_of(k.sender_pid, k.sender_gen)
        head.append(
            f"SPOOFED: the siginfo claims {claim}; really sent by pid {k.sender_pid} "
            f"user {real.user if real else '?'}\n",
            style="bold red",
        )
    codes = ", ".join(f"{si_code_name(k.sig, c)}:{n}" for c, n in r.codes.items())
    head.append(f"si_code: {codes or '-'}   first {clock(r.first_ts)}  last {clock(r.last_ts)}\n")
    now = model.last_ts or time.time()
    head.append_text(fates_text(r, now))
    head.append_text(latency_text(r))
    for line in explain_row(registry, r, now).lines:
        head.append(f"why: {line}\n", style="yellow")
    disposition = target_disposition(registry, r)
    if disposition is not None:
        blockers = disposition["blocked_by"]
        head.append(
            f"the target's {signame(k.sig)} as of {clock(disposition['as_of'] or 0)}: {disposition['action']}; "
            f"blocked by {len(blockers)} of {disposition['threads']} threads"
            + (f" ({', '.join(map(str, blockers[:8]))})" if blockers else "")
            + ("; pending" if disposition["pending_now"] else "")
            + "\n"
        )
    events = list(r.events)[-MAX_DETAIL_EVENTS:]
    rows = tuple(
        (
            clock(e.ts),
            str(e.sender_tid) if e.syscall else "-",
            str(e.target_pid),
            syscall_args(e),
            si_code_name(e.sig, e.code),
            si_value_text(e),
            result_text(e),
            f"{e.latency_ns / 1000:.1f} us" if e.latency_ns is not None else "-",
            str(e.taken_tid) if e.taken_tid else "-",  # the thread that took it (signal_deliver)
        )
        for e in reversed(events)
    )
    events_table = DetailTable(
        "recent events",
        ("TIME", "SENDER TID", "TARGET TID", "CALL", "SI_CODE", "SI_VALUE", "RESULT", "LATENCY", "TAKEN BY"),
        rows,
        "no detail events for this flow (lost, or captured without details)",
    )
    return Detail(
        title=f"Flow {k.sender_pid or 'kernel'} → {target_text(r)} {signame(k.sig)}",
        sections=(
            head,
            process_text(model, k.sender_pid, "sender", k.sender_gen),
            process_text(model, k.target_pid, "target", k.target_gen),
        ),
        tables=(events_table,),
    )


# ---- metrics -------------------------------------------------------------------------------

OTHER = "other"
# Generate-to-take latency buckets (seconds): 1 us to 10 s, where detail events time them.
LATENCY_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1.0, 10.0)
# Where the kernel times every take itself (fates followed): edges of its own buckets (2^n ns,
# about 1 us to 8.6 s), so that each count falls in its bucket exactly.
KERNEL_LATENCY_EDGES_NS = (*(1 << n for n in range(10, 34, 2)), 1 << 33)
FATES = ("taken", "read", "discarded", "untracked", "suppressed")
MAX_CANDIDATES = 10_000


class BoundedLabels:
    """Which values of an unbounded label (comm, container) get a series of their own.

    A value is admitted once it has been seen `min_count` times, at most `limit`
    values ever; admitted values keep their series (a counter must never go
    down, so nothing is ever demoted), everything else counts under `other`
    (including an admitted value's counts before it was admitted: sums stay
    exact). Candidates are remembered in a bounded LRU.
    """

    def __init__(self, limit: int, min_count: int) -> None:
        self.limit, self.min_count = limit, min_count
        self.admitted: set[str] = set()
        self._candidates: BoundedLRU[str, int] = BoundedLRU(MAX_CANDIDATES)

    def label(self, value: str, count: int) -> str:
        if value in self.admitted:
            return value
        if not value or len(self.admitted) >= self.limit:
            return OTHER
        seen = self._candidates.pop(value, 0) + count
        if seen >= self.min_count:
            self.admitted.add(value)
            return OTHER  # this batch's count was seen before the series existed
        self._candidates.put(value, seen)
        return OTHER


class FlowMetrics(TableMetrics):
    """Signals by signal, origin and result; failed sends; probes; forgeries; fates; what is pending;
    the generate-to-take latency; and, opt-in, signals by sender and target comm or container."""

    def __init__(self, options: ExportOptions) -> None:
        self.label_by = options.label_by
        self._senders = BoundedLabels(options.top, options.label_min)
        self._targets = BoundedLabels(options.top, options.label_min)
        self._containers: BoundedLRU[int, str] = BoundedLRU(MAX_CANDIDATES)  # pid -> its container label
        self.by_label: Counter[tuple[str, str, str]] = Counter()  # (signal, sender, target)
        self.signals: Counter[tuple[str, str, str]] = Counter()  # (signal, origin, result)
        self.send_errors: Counter[tuple[str, str, str]] = Counter()  # (syscall, signal, errno)
        self.probes: Counter[str] = Counter()  # syscall
        self.spoofed: Counter[str] = Counter()  # signal
        self.fates: Counter[tuple[str, str]] = Counter()  # (signal, fate)
        self.pending: Counter[str] = Counter()  # signal -> queued and not yet taken (state)
        # Per signal: counts per bucket, the +Inf count and the sum.
        self.latency: dict[str, list[float]] = {}
        self.kernel_latency = False  # the kernel times every take: its histograms, not the events
        # With --details the exporter keeps a model: the flow rows it gave up to its row cap, by owner
        # and name (bounded: MAX_EVICTED_USERS x MAX_EVICTED_NAMES). Without, nothing is evicted.
        self.evicted: list[dict[str, Any]] = []

    def observe_latency(self, sig: int, latency_ns: int) -> None:
        """One delivery matched to its generation (the model's matcher, where the kernel does not time them)."""
        if self.kernel_latency:
            return  # counted exactly from the kernel's histograms
        seconds = latency_ns / 1e9
        row = self.latency.get(signame(sig))
        if row is None:
            row = self.latency[signame(sig)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                row[i] += 1
        row[-2] += 1
        row[-1] += seconds

    def _kernel_latency(self, sig: str, h: LatencyHistogram) -> None:
        """Fold a flow's new kernel-timed takes into the signal's histogram (cumulative, exact per edge)."""
        row = self.latency.get(sig)
        if row is None:
            row = self.latency[sig] = [0.0] * (len(KERNEL_LATENCY_EDGES_NS) + 2)
        for i, n in enumerate(h.buckets):
            if not n:
                continue
            high = latency_bucket_bounds(i)[1]
            for j, edge in enumerate(KERNEL_LATENCY_EDGES_NS):
                if high <= edge:
                    row[j] += n
        row[-2] += h.count
        row[-1] += h.sum_ns / 1e9

    def after_model(self, model: SignalModel) -> None:
        if model.flows_table.evicted:
            self.evicted = evicted_json(model.flows_table)

    def _value(self, pid: int, comm: str) -> str:
        if self.label_by == "comm":
            return printable(comm) if pid else "[kernel]"
        return self._containers.get(pid, "") or "host"

    def apply(self, batch: Batch) -> None:
        if batch.pending is not None and not self.kernel_latency:
            # The kernel follows and times every take: its histograms replace the events' matches.
            self.kernel_latency = True
            self.latency.clear()
        if self.label_by == "container":
            for proc in batch.procs:
                self._containers.put(proc.pid, container_of(proc.cgroup).label)
        for delta in batch.flows:
            k = delta.key
            sig = signame(k.sig)
            if self.label_by and k.result in GENERATED_RESULTS and delta.count:
                sender = self._senders.label(self._value(k.sender_pid, delta.sender_comm), delta.count)
                target_pid = k.target_tgid or k.target_pid
                target = self._targets.label(self._value(target_pid, delta.target_comm), delta.count)
                self.by_label[(sig, sender, target)] += delta.count
            origin = k.origin()
            if k.result in GENERATED_RESULTS:
                self.signals[(sig, origin, result_word(k.result))] += delta.count
                if k.spoofed:
                    self.spoofed[sig] += delta.count
            elif k.result == Result.failed:
                self.send_errors[(origin, sig, errno_name(k.err))] += delta.count
            elif k.result == Result.no_signal:
                self.probes[origin] += delta.count
            for fate in FATES:
                n = getattr(delta, fate)
                if n:
                    self.fates[(sig, fate)] += n
            if delta.latency is not None:
                self._kernel_latency(sig, delta.latency)
        if batch.pending is not None:
            self.pending = Counter()
            for p in batch.pending:
                self.pending[signame(p.key.sig)] += p.count

    def collect(self) -> Iterator[Any]:
        signals = CounterMetricFamily(
            "sigtop_signals", "Signals generated, by signal, origin (syscall or kernel class) and result",
            labels=["signal", "origin", "result"],
        )  # fmt: skip
        for (sig, origin, result), n in sorted(self.signals.items()):
            signals.add_metric([sig, origin, result], n)
        yield signals
        errors = CounterMetricFamily(
            "sigtop_signal_send_errors", "Send syscalls that failed, by syscall, signal and errno",
            labels=["syscall", "signal", "errno"],
        )  # fmt: skip
        for labels, n in sorted(self.send_errors.items()):
            errors.add_metric(list(labels), n)
        yield errors
        probes = CounterMetricFamily("sigtop_signal_probes", "Signal-0 probes, by syscall", labels=["syscall"])
        for syscall, n in sorted(self.probes.items()):
            probes.add_metric([syscall], n)
        yield probes
        spoofed = CounterMetricFamily(
            "sigtop_signals_spoofed", "Signals whose siginfo claimed another sender", labels=["signal"]
        )
        for sig, n in sorted(self.spoofed.items()):
            spoofed.add_metric([sig], n)
        yield spoofed
        if self.label_by:
            by = CounterMetricFamily(
                f"sigtop_signals_by_{self.label_by}",
                f"Signals generated, by sender's and target's {self.label_by} (bounded: the rest are 'other')",
                labels=["signal", "sender", "target"],
            )
            for labels, n in sorted(self.by_label.items()):
                by.add_metric(list(labels), n)
            yield by
        if self.latency:
            histogram = HistogramMetricFamily(
                "sigtop_signal_latency_seconds",
                "Generate-to-take latency of every signal taken (timed in the kernel; without BTF, "
                "of those whose delivery the detail events showed)",
                labels=["signal"],
            )
            edges = [ns / 1e9 for ns in KERNEL_LATENCY_EDGES_NS] if self.kernel_latency else LATENCY_BUCKETS
            for sig, row in sorted(self.latency.items()):
                buckets = [(f"{b:g}", row[i]) for i, b in enumerate(edges)] + [("+Inf", row[-2])]
                histogram.add_metric([sig], buckets, row[-1])
            yield histogram
        fates = CounterMetricFamily(
            "sigtop_signal_fates",
            "What became of queued signals: taken (handler or default action), read (sigwait, signalfd), "
            "discarded (pending at exit), untracked",
            labels=["signal", "fate"],
        )
        for (sig, fate), n in sorted(self.fates.items()):
            fates.add_metric([sig, fate], n)
        yield fates
        pending = GaugeMetricFamily(
            "sigtop_signals_pending", "Signals queued and not yet taken, now (blocked, or not yet run)",
            labels=["signal"],
        )  # fmt: skip
        for sig, n in sorted(self.pending.items()):
            pending.add_metric([sig], n)
        yield pending
        if self.evicted:
            rows = CounterMetricFamily(
                "sigtop_flow_rows_evicted",
                "Flow rows given up to the row cap (--details), by owner and comm",
                labels=["user", "comm"],
            )
            signals = CounterMetricFamily(
                "sigtop_evicted_flow_signals",
                "What those rows had counted (their signals stay in sigtop_signals)",
                labels=["user", "comm"],
            )
            for e in self.evicted:
                rows.add_metric([e["user"], e["comm"]], e["rows"])
                signals.add_metric([e["user"], e["comm"]], e["signals"])
            yield rows
            yield signals


def _folded_detail(r: FlowRow) -> Detail:
    """A folded or grouped row's drill-down: what it sums, then each row it holds (f or g in the
    table shows them one row each)."""
    head = Text()
    head.append("Folded  " if all(m.key.via in FOLD_VIA for m in r.members) else "Group  ", style="bold")
    head.append(f"{len(r.members)} rows: {_sender(r)} {sender_comm_text(r).plain} -> {target_text(r)} ")
    head.append(f"{target_comm_text(r).plain}  {_signal_text(r)} via {_via(r).plain}\n")
    head.append(
        f"count {r.count}, queued {r.queued}, ignored {r.results[Result.ignored]}, merged "
        f"{r.results[Result.already_pending]}, failed {r.failed}; f (folded) or g (grouped) in the table "
        "shows them one row each",
    )
    rows = tuple(
        (str(m.key.sender_pid or "-"), m.sender_comm if m.key.sender_pid else "[kernel]", target_text(m),
         m.target_comm, signame(m.key.sig), m.key.via, str(m.count), clock(m.last_ts))
        for m in r.members
    )  # fmt: skip
    return Detail(
        title=f"{len(r.members)} rows {sender_comm_text(r).plain} -> {target_comm_text(r).plain} {_signal_text(r)}",
        sections=(head,),
        tables=(
            DetailTable(
                "Rows, newest first", ("SENDER", "COMM", "TARGET", "COMM", "SIGNAL", "VIA", "COUNT", "LAST"), rows
            ),
        ),
    )


def rows(model: SignalModel) -> Any:
    return ((repr(k), r) for k, r in model.flows.items())


FOLD_VIA = frozenset({"child"})  # raised on a short-lived process about itself: SIGCHLD on exit or stop


def fold_children(selected: list[tuple[str, FlowRow]]) -> list[tuple[str, FlowRow]]:
    """Rows that differ only by which child sent them (each child's SIGCHLD at its exit: one row
    per process a parent ever started) as one row per sender name, target and signal, their counts
    summed; the processes are its `members`, shown by its drill-down. The view's alone: the model,
    the JSON and the exporter keep every row."""
    groups: dict[tuple[Any, ...], list[tuple[str, FlowRow]]] = {}
    kept: list[tuple[str, FlowRow]] = []
    for key, row in selected:
        k = row.key
        if k.via in FOLD_VIA and k.sender_pid and not k.spoofed:
            groups.setdefault((row.sender_comm, k.target_pid, k.target_gen, k.sig, k.via), []).append((key, row))
        else:
            kept.append((key, row))
    for (comm, target, gen, sig, via), members in groups.items():
        if len(members) == 1:
            kept.append(members[0])
            continue
        kept.append((f"fold:{comm!r}:{target}:{gen}:{sig}:{via}", _sum_rows([row for _key, row in members])))
    return kept


# The view's groupings (g cycles them): rows summed by sender name, by target, or by signal.
GROUPINGS: dict[str, Any] = {
    "sender": lambda r: (r.sender_comm if r.key.sender_pid else "[kernel]",),
    "target": lambda r: (r.key.target_pid, r.key.target_gen, r.key.ns_of, r.key.pidfd),
    "signal": lambda r: (r.key.sig,),
}


TREE_DEPTH = "tree_depth"
MAX_TREE_DEPTH = 64  # deeper ancestries are drawn at this depth (a pid cycle in stale data ends too)


def sender_tree(model: Any, rows: list[tuple[str, FlowRow]], view: Any) -> list[tuple[str, FlowRow]]:
    """Flows under their sender's ancestors (htop's F5): each sender's rows follow those of its
    nearest ancestor that also sends here, one level deeper; siblings, and a sender's own rows,
    keep the order they came in (the column's sort). Depths are left on the view for the COMM cell."""
    by_sender: dict[int, list[tuple[str, FlowRow]]] = {}
    for key, row in rows:
        by_sender.setdefault(row.key.sender_pid, []).append((key, row))

    def parent_of(pid: int) -> int:
        seen = {pid}
        proc = model.registry.proc_of(pid) if pid else None
        while proc is not None and proc.ppid and proc.ppid not in seen and len(seen) < MAX_TREE_DEPTH:
            if proc.ppid in by_sender:
                return proc.ppid
            seen.add(proc.ppid)
            proc = model.registry.proc_of(proc.ppid)
        return -1  # a root

    children: dict[int, list[int]] = {}
    for pid in by_sender:
        children.setdefault(parent_of(pid), []).append(pid)
    out: list[tuple[str, FlowRow]] = []
    placed: set[int] = set()

    def walk(pid: int, depth: int) -> None:
        placed.add(pid)
        for item in by_sender[pid]:
            view.remember(TREE_DEPTH, item[1], depth)
            out.append(item)
        for child in children.get(pid, ()):
            if child not in placed:
                walk(child, min(depth + 1, MAX_TREE_DEPTH))

    for root in children.get(-1, ()):
        walk(root, 0)
    for pid in by_sender:  # in a cycle of stale parents (reused pids): shown at the top, never lost
        if pid not in placed:
            walk(pid, 0)
    return out


def _in_tree(text: Text, depth: int) -> Text:
    """A COMM cell drawn at its depth in the tree (htop's └─)."""
    if not depth:
        return text
    drawn = Text("  " * (depth - 1) + "└─ ", style="dim")
    drawn.append_text(text)
    return drawn


def group_rows(selected: list[tuple[str, FlowRow]], by: str) -> list[tuple[str, FlowRow]]:
    """Every row summed into one per sender name, target or signal (htop's and k9s's habit); a
    group of one is that row. The members are in the group row's drill-down."""
    keyer = GROUPINGS[by]
    groups: dict[tuple[Any, ...], list[tuple[str, FlowRow]]] = {}
    for key, row in selected:
        groups.setdefault(keyer(row), []).append((key, row))
    out = []
    for value, members in groups.items():
        if len(members) == 1:
            out.append(members[0])
        else:
            out.append((f"group:{by}:{value!r}", _sum_rows([row for _key, row in members])))
    return out


def _sum_rows(members: list[FlowRow]) -> FlowRow:
    first = max(members, key=lambda r: r.last_ts)
    k = first.key
    one = {(m.key.target_pid, m.key.target_gen) for m in members}
    senders = {m.key.sender_pid for m in members}
    folded = FlowRow(
        # One target's reasons where all go to one; none from another's disposition where they do not.
        key=FlowRowKey(
            next(iter(senders)) if len(senders) == 1 else 0,
            k.target_pid if len(one) == 1 else 0,
            k.sig,
            k.via,
            target_gen=k.target_gen if len(one) == 1 else 0,
        ),
        sender_comm=first.sender_comm,
        target_comm=first.target_comm,
        syscall=first.syscall,
        first_ts=min(r.first_ts for r in members),
        last_ts=first.last_ts,
        rate=sum(r.rate for r in members),
        target_container=first.target_container,
        sender_container=first.sender_container
        if all(r.sender_container == first.sender_container for r in members)
        else "",
        fates=all(r.fates for r in members),
        owner_uid=first.owner_uid,
        members=tuple(sorted(members, key=lambda r: (-r.first_ts, r.key.sender_pid))),
    )
    for r in members:
        folded.results = [a + b for a, b in zip(folded.results, r.results, strict=True)]
        folded.errors.update(r.errors)
        folded.codes.update(r.codes)
        folded.taken += r.taken
        folded.read += r.read
        folded.discarded += r.discarded
        folded.suppressed += r.suppressed
        folded.suppressed_by = r.suppressed_by or folded.suppressed_by
        folded.untracked += r.untracked
        folded.pending += r.pending
        if r.pending_since and (not folded.pending_since or r.pending_since < folded.pending_since):
            folded.pending_since = r.pending_since
        if r.latency is not None:
            if folded.latency is None:
                folded.latency = LatencyHistogram(list(r.latency.buckets), r.latency.max_ns, r.latency.sum_ns)
            else:
                folded.latency.add(r.latency)
    return folded


SPEC = TableSpec(
    name="flows",
    title="Flows",
    key="1",
    columns=COLUMNS,
    default_sort="count",
    rows=rows,
    select=select,
    to_json=to_json,
    detail=detail,
    fold=fold_children,
    group=group_rows,
    groupings=tuple(GROUPINGS),
    tree=sender_tree,
    json_order=json_order,
    state=FlowTable,
    metrics=FlowMetrics,
    plain_title=lambda doc: f"Signal flows ({doc['duration_s']} s, {doc['total_signals']} signals)",
    printed_empty=True,
    container=lambda r: r.target_container or r.sender_container,
    help="\n".join(
        (
            'Results: QUEUED put on a pending list (the kernel\'s "delivered"), IGN discarded (ignored), MERGED '
            "already pending (lost merge), LOST realtime queue overflow, FAILED the call failed (errno).",
            "Fates of the queued: TAKEN by a handler or the default action, or read (sigwait, signalfd); PEND "
            "still pending (blocked?); DISC discarded when the target exited; suppressed by a tracer that resumed "
            "the target without it (the drill-down and REASON say which). P99: generate-to-take latency, "
            "every signal timed in the kernel.",
            "VIA: the syscall, or for kernel-raised signals: fault, child, timer, io, pipe, rlimit, kernel; "
            "cgroup.kill, pdeathsig and ptrace name their sender.",
        )
    ),
    empty="No signals yet: every signal sent, raised by the kernel, probed (sig 0) or refused shows here "
    "as it happens, sender → target.",
)
