"""The sigreturn table: rt_sigreturn per process, handler deliveries, the balance, and returns with no
handler frame outstanding (how sigreturn-oriented programming starts)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily
from rich.text import Text

from sigtop.names import printable
from sigtop.tables.base import (
    Column,
    Detail,
    DetailTable,
    ExportOptions,
    SignalModel,
    TableMetrics,
    TableSpec,
    TableState,
    by,
    evict_fairly,
    num,
    pid_cell,
    process_text,
)
from sigtop.timefmt import clock
from sigtop.wire import Batch, SignalEvent

if TYPE_CHECKING:
    from sigtop.filters import FlowFilter
    from sigtop.registry import ProcessRegistry

HISTORY_POINTS = 120


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
    owner_uid: int = -1  # its user, as /proc said (-1: not known), for fair eviction
    # The row's last EVENTS_PER_ROW detail events; () until it keeps one (20,000 empty deques: 15 MB).
    events: list[SignalEvent] | tuple[()] = ()  # its last EVENTS_PER_ROW, oldest first
    gen: int = 0  # which process of that pid (see the registry)

    @property
    def balance(self) -> int:
        """Handler deliveries minus returns: > 0 handlers left by longjmp, < 0 suspicious."""
        return self.handler_deliveries - self.sigreturns


class SigreturnTable(TableState):
    def __init__(self) -> None:
        # By pid: the process that holds it now; an earlier owner's row by (pid, its generation).
        self.rows: dict[int | tuple[int, int], SigreturnRow] = {}
        self._rated: set[int] = set()
        self.kernel_counts_unmatched = False  # thread deltas carry exact unmatched counts

    def reused(self, pid: int, earlier: int) -> None:
        """`pid` is another process now: its row stays, as the earlier owner's."""
        row = self.rows.pop(pid, None)
        if row is not None:
            self.rows[(pid, earlier)] = row

    def row(self, pid: int, registry: ProcessRegistry) -> SigreturnRow:
        found = self.rows.get(pid)
        if found is None:
            found = self.rows[pid] = SigreturnRow(pid, gen=registry.gen(pid))
        if found.owner_uid == -1:
            info = registry.procs.get(pid)
            found.owner_uid = info.uid if info else -1
        return found

    def fold(self, batch: Batch, model: SignalModel) -> None:
        registry = model.registry
        interval = batch.interval_s if batch.interval_s > 0 else 1.0
        per_process: dict[int, list[int]] = {}
        for t in batch.threads:
            row = self.row(t.tgid, registry)
            # The kernel's comm is the thread's when it was first seen (maybe
            # before an exec); /proc's, when the collector read it, is newer.
            info = registry.procs.get(t.tgid)
            if info and info.comm:
                row.comm = info.comm
            elif t.tid == t.tgid or not row.comm:
                row.comm = printable(t.comm)
            row.sigreturns += t.sigreturns
            row.handler_deliveries += t.handler_deliveries
            row.deliveries += t.deliveries
            if t.unmatched is not None:
                row.unmatched += t.unmatched
                self.kernel_counts_unmatched = True
            row.last_ts = max(row.last_ts, t.last_ts)
            acc = per_process.setdefault(t.tgid, [0, 0])
            acc[0] += t.sigreturns
            acc[1] += t.handler_deliveries
        for pid in self._rated - per_process.keys():
            row = self.rows.get(pid)
            if row:
                row.rate = row.handler_rate = 0.0
                row.history.append(0)
        for pid, (returns, handled) in per_process.items():
            row = self.rows[pid]
            row.rate = returns / interval
            row.handler_rate = handled / interval
            row.history.append(returns)
        self._rated = set(per_process)

    def unmatched_event(self, pid: int, registry: ProcessRegistry) -> SigreturnRow:
        """A row for an unmatched rt_sigreturn event (counted from events in old recordings only)."""
        row = self.row(pid, registry)
        if not self.kernel_counts_unmatched:  # an old recording: only the events say
            row.unmatched += 1
        return row

    def evict(self, max_rows: int) -> int:
        """From the users holding most rows; a process with a return that had no handler frame
        (SROP's evidence) goes after every one without."""
        return len(evict_fairly(self.rows, max_rows, lambda r: r.owner_uid, lambda r: (r.unmatched > 0, r.last_ts)))

    def clear(self) -> None:
        self.rows.clear()
        self._rated.clear()


COLUMNS = (
    Column("pid", "PID", by(lambda r: r.pid), pid_cell(lambda r: r.pid), True, 100),
    Column("comm", "COMM", by(lambda r: r.comm), lambda r, _v: Text(r.comm), priority=60),
    Column("rate", "SIGRET/s", by(lambda r: r.rate), num(lambda r: r.rate), True, 90, live_only=True),
    Column("total", "TOTAL", by(lambda r: r.sigreturns), num(lambda r: r.sigreturns), True, 85),
    Column("handled_rate", "HANDLED/s", by(lambda r: r.handler_rate), num(lambda r: r.handler_rate), True, 50,
           live_only=True),
    Column("balance", "BALANCE", by(lambda r: r.balance),
           num(lambda r: r.balance, lambda r: "red" if r.balance < 0 else ""), True, 80),
    Column("unmatched", "UNMATCHED", by(lambda r: r.unmatched),
           num(lambda r: r.unmatched, lambda r: "bold red" if r.unmatched else ""), True, 95),
)  # fmt: skip


def select(model: SignalModel, row: SigreturnRow, flt: FlowFilter) -> bool:
    return flt.matches((row.pid,), (row.comm,), None, (model.registry.container(row.pid),))


def to_json(model: SignalModel, r: SigreturnRow) -> dict[str, Any]:
    duration = model.duration_s
    return {
        "pid": r.pid,
        "comm": r.comm,
        "count": r.sigreturns,
        "per_sec": round(r.sigreturns / duration, 3) if duration else 0.0,
        "handler_deliveries": r.handler_deliveries,
        "balance": r.balance,
        "unmatched": r.unmatched,
    }


def detail(model: SignalModel, r: SigreturnRow) -> Detail:
    head = Text()
    head.append("rt_sigreturn  ", style="bold")
    head.append(f"pid {r.pid} {r.comm}  total {r.sigreturns}  now {r.rate:.1f}/s  ")
    head.append(f"handler deliveries {r.handler_deliveries}  balance {r.balance}\n")
    if r.unmatched:
        head.append(
            f"{r.unmatched} rt_sigreturn with no handler frame outstanding: SROP, "
            "or a handler entered before tracing began (fork and exec are accounted for)",
            style="bold red",
        )
    else:
        head.append("every rt_sigreturn matched a handler delivery")
    unmatched = tuple(
        (clock(e.ts), str(e.sender_tid), Text(e.comm), "unmatched rt_sigreturn") for e in reversed(r.events)
    )
    return Detail(
        title=f"rt_sigreturn of {r.pid}",
        sections=(head, process_text(model, r.pid, "process", r.gen)),
        tables=(DetailTable("unmatched returns", ("TIME", "TID", "COMM", "EVENT"), unmatched),),
        sparkline=tuple(r.history) or (0,),
        sparkline_caption="rt_sigreturn per interval (oldest left):",
    )


class SigreturnMetrics(TableMetrics):
    def __init__(self, _options: ExportOptions) -> None:
        self.sigreturns = 0
        self.unmatched = 0

    def apply(self, batch: Batch) -> None:
        for thread in batch.threads:
            self.sigreturns += thread.sigreturns
            self.unmatched += thread.unmatched or 0

    def collect(self) -> Any:
        yield CounterMetricFamily("sigtop_rt_sigreturn", "rt_sigreturn calls", value=self.sigreturns)
        yield CounterMetricFamily(
            "sigtop_rt_sigreturn_unmatched",
            "rt_sigreturn with no handler frame outstanding (sigreturn-oriented programming starts so)",
            value=self.unmatched,
        )


def rows(model: SignalModel) -> Any:
    return ((str(k), r) for k, r in model.sigreturns.items())


SPEC = TableSpec(
    name="sigreturn",
    title="Sigreturn",
    key="3",
    plain_title=lambda _doc: "rt_sigreturn",
    help="Sigreturn BALANCE: handler deliveries minus rt_sigreturns; UNMATCHED: returns with no handler frame "
    "outstanding (how SROP starts).",
    columns=COLUMNS,
    default_sort="total",
    rows=rows,
    select=select,
    to_json=to_json,
    detail=detail,
    json_order=lambda r: -r.sigreturns,
    state=SigreturnTable,
    unavailable=lambda model: (
        "--light attaches no syscall tracepoint, and rt_sigreturn is seen only by its own" if model.light else None
    ),
    metrics=SigreturnMetrics,
    empty="No rt_sigreturn yet: a process shows here when one of its threads returns from a signal handler.",
)
