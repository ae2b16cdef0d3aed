"""The alerts table: what looks like an attack (SROP's first step, a forged siginfo, probing),
each kept after its process is gone (the detector is sigtop.alerts)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily
from rich.text import Text

from sigtop.alerts import Alert, AlertDetector
from sigtop.containers import container_of
from sigtop.lru import BoundedLRU
from sigtop.tables.base import (
    Column,
    Detail,
    ExportOptions,
    SignalModel,
    TableMetrics,
    TableSpec,
    TableState,
    by,
    pid_cell,
)
from sigtop.timefmt import clock
from sigtop.wire import Batch, ProcInfo

if TYPE_CHECKING:
    from sigtop.filters import FlowFilter

MAX_ALERTS = 1_000

WHAT = {
    "srop": "an rt_sigreturn with no handler frame outstanding on that thread: sigreturn-oriented "
    "programming starts so (a forged frame restores every register); fork and exec are accounted for, "
    "so a handler entered before sigtop attached is the only innocent cause",
    "spoofed": "a signal whose siginfo claims another sender (si_pid/si_uid) than the process that sent it",
    "probing": "a burst of failed sends (EPERM, ESRCH) from one process in one interval: it is looking for "
    "processes it may signal",
}


class AlertTable(TableState):
    def __init__(self) -> None:
        self.rows: deque[Alert] = deque(maxlen=MAX_ALERTS)
        self.detector = AlertDetector()

    def fold(self, batch: Batch, model: SignalModel) -> None:
        self.rows.extend(self.detector.scan(batch, model.registry.procs))

    def clear(self) -> None:
        self.rows.clear()


def _chain(a: Alert) -> str:
    return " <- ".join(f"{p} {c}" for p, c in a.parents[:4]) or "-"


COLUMNS = (
    Column("time", "TIME", by(lambda a: a.ts), lambda a, _v: clock(a.ts), priority=90),
    Column("kind", "KIND", by(lambda a: a.kind), lambda a, _v: Text(a.kind, style="bold red"), priority=100),
    Column("pid", "PID", by(lambda a: a.pid), pid_cell(lambda a: a.pid), True, 100),
    Column("tid", "TID", by(lambda a: a.tid), lambda a, _v: Text(str(a.tid or "-"), justify="right"), True, 40),
    Column("comm", "COMM", by(lambda a: a.comm), lambda a, _v: Text(a.comm), priority=95),
    Column("detail", "DETAIL", by(lambda a: a.detail), lambda a, _v: Text(a.detail), priority=92),
    Column("cgroup", "CGROUP", by(lambda a: a.cgroup), lambda a, _v: Text(a.cgroup or "-"), priority=30),
    Column("parents", "PARENTS", by(_chain), lambda a, _v: Text(_chain(a)), priority=20),
)  # fmt: skip


def select(_model: SignalModel, a: Alert, flt: FlowFilter) -> bool:
    return flt.matches((a.pid,), (a.comm,), None, (container_of(a.cgroup).label,))


def to_json(_model: SignalModel, a: Alert) -> dict[str, Any]:
    return {
        "kind": a.kind,
        "ts": round(a.ts, 6),
        "pid": a.pid,
        "tid": a.tid or None,
        "comm": a.comm,
        "detail": a.detail,
        "cgroup": a.cgroup,
        "parents": [{"pid": p, "comm": c} for p, c in a.parents],
    }


def detail(_model: SignalModel, a: Alert) -> Detail:
    head = Text()
    head.append(f"Alert: {a.kind}  ", style="bold red")
    head.append(f"at {clock(a.ts)}\n")
    head.append(f"{WHAT.get(a.kind, a.kind)}\n\n")
    head.append(f"process {a.pid}" + (f" thread {a.tid}" if a.tid else "") + f"  comm {a.comm}\n")
    head.append(f"detail: {a.detail}\n")
    head.append(f"cgroup: {a.cgroup or '-'}\n")
    head.append(f"parents: {' <- '.join(f'{p} {c}' for p, c in a.parents) or '-'}")
    return Detail(title=f"Alert {a.kind} {a.pid}", sections=(head,))


MAX_PROCS_SEEN = 10_000


class AlertMetrics(TableMetrics):
    """Alerts by kind: the same detector as the model's, over the batches (no model needed)."""

    def __init__(self, _options: ExportOptions) -> None:
        self.detector = AlertDetector()
        self._procs: BoundedLRU[int, ProcInfo] = BoundedLRU(MAX_PROCS_SEEN)

    def apply(self, batch: Batch) -> None:
        for proc in batch.procs:
            self._procs.put(proc.pid, proc)
        self.detector.scan(batch, self._procs)

    def collect(self) -> Any:
        alerts = CounterMetricFamily("sigtop_alerts", "Alerts raised, by kind", labels=["kind"])
        for kind in ("srop", "spoofed", "probing"):
            alerts.add_metric([kind], self.detector.counts[kind])
        yield alerts


def rows(model: SignalModel) -> Any:
    return ((f"{a.kind}:{a.pid}:{a.ts}", a) for a in model.alerts)


SPEC = TableSpec(
    name="alerts",
    title="Alerts",
    key="5",
    other_keys=("a",),
    columns=COLUMNS,
    default_sort="time",
    rows=rows,
    select=select,
    to_json=to_json,
    detail=detail,
    state=AlertTable,
    metrics=AlertMetrics,
    empty="No alerts: an rt_sigreturn with no handler frame, a forged siginfo or a burst of failed sends "
    "would show here (kept after the process is gone).",
)
