"""The deaths table: every process that ended because of a signal while sigtop ran, and who or what
sent it (the cause comes from the death ledger, sigtop.model.ledger)."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily
from rich.text import Text

from sigtop.containers import container_of
from sigtop.names import signame
from sigtop.reasons import DEFAULT_CORE
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
    pid_cell,
    process_text,
)
from sigtop.tables.flows import container_json
from sigtop.timefmt import age, clock

if TYPE_CHECKING:
    from sigtop.filters import FlowFilter

MAX_DEATHS = 5_000


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
    # bounded, for metrics: sender, stop-timeout, fault, self, oom, parent-death, kernel, unknown
    cause_kind: str = "unknown"
    sender_pid: int = 0  # the process that sent the fatal signal (0: the kernel, or not seen)
    lifetime_s: float | None = None  # from its start time, where /proc told it
    cgroup: str = ""  # its cgroup when it died (the kernel's, else /proc's)
    # Its threads that the signal ended: a fatal signal ends the whole process, the kernel
    # sending each thread a SIGKILL (None: not known, a recording made before sigtop counted it).
    threads: int | None = None


class DeathTable(TableState):
    def __init__(self) -> None:
        self.rows: deque[Death] = deque(maxlen=MAX_DEATHS)
        self.seen = 0  # ever (the deque keeps the newest MAX_DEATHS)

    def add(self, death: Death) -> None:
        self.rows.append(death)
        self.seen += 1

    def clear(self) -> None:
        self.rows.clear()


def threads_text(d: Death) -> str:
    """What the kernel did to its threads: a fatal signal is the whole process's end."""
    if not d.threads:
        return ""
    if d.threads == 1:
        return "1 (its only thread)"
    if d.sig in DEFAULT_CORE:
        return f"all {d.threads} ended (the thread that took {signame(d.sig)} dumped, the kernel SIGKILLed the rest)"
    return f"all {d.threads} ended ({signame(d.sig)} is fatal to the whole process: the kernel SIGKILLed each thread)"


def _lifetime(d: Death) -> str:
    if d.lifetime_s is None:
        return "-"
    return age(d.ts, d.ts - d.lifetime_s)


COLUMNS = (
    Column("time", "TIME", by(lambda d: d.ts), lambda d, _v: clock(d.ts), priority=90),
    Column("pid", "PID", by(lambda d: d.pid), pid_cell(lambda d: d.pid), True, 100),
    Column("comm", "COMM", by(lambda d: d.comm), lambda d, _v: Text(d.comm), priority=95),
    Column("signal", "SIGNAL", by(lambda d: d.sig), lambda d, _v: signame(d.sig), priority=100),
    Column("core", "CORE", by(lambda d: d.core), lambda d, _v: "core" if d.core else "", priority=40),
    Column("lived", "LIVED", by(lambda d: d.lifetime_s or 0), lambda d, _v: Text(_lifetime(d), justify="right"),
           True, 30),
    Column("cause", "CAUSE", by(lambda d: d.cause), lambda d, _v: Text(d.cause), priority=99),
    # The threads it ended: a fatal signal ends every thread of the process, not the one it hit.
    Column("threads", "THREADS", by(lambda d: d.threads or 0),
           lambda d, _v: Text(str(d.threads) if d.threads else "-", justify="right"), True, 32),
    # Its container or service, else its cgroup path (as it was when it died).
    Column("cgroup", "CGROUP", by(lambda d: d.cgroup),
           lambda d, _v: Text(container_of(d.cgroup).label or d.cgroup), priority=35),
)  # fmt: skip


def select(_model: SignalModel, d: Death, flt: FlowFilter) -> bool:
    return flt.matches((d.pid, d.sender_pid), (d.comm,), d.sig, (container_of(d.cgroup).label,))


def to_json(_model: SignalModel, d: Death) -> dict[str, Any]:
    return {
        "pid": d.pid,
        "comm": d.comm,
        "sig": d.sig,
        "signame": signame(d.sig),
        "core_dumped": d.core,
        "ts": round(d.ts, 6),
        "lifetime_s": round(d.lifetime_s, 3) if d.lifetime_s is not None else None,
        "cause": d.cause,
        "cause_kind": d.cause_kind,
        "threads": d.threads,
        "sender_pid": d.sender_pid or None,
        "parent_pid": d.parent,
        "cgroup": d.cgroup or None,
        "container": container_json(d.cgroup) if d.cgroup else None,
    }


def detail(model: SignalModel, d: Death) -> Detail:
    head = Text()
    head.append("Death  ", style="bold")
    head.append(f"pid {d.pid} {d.comm}  {signame(d.sig)}{'  (core dumped)' if d.core else ''}  at {clock(d.ts)}\n")
    head.append("cause: ", style="bold")
    head.append(d.cause)
    if d.threads:
        head.append("\nthreads: ", style="bold")
        head.append(threads_text(d))
    received = sorted(
        (r for r in model.flows.values() if r.key.target_pid == d.pid and r.count),
        key=lambda r: r.last_ts,
        reverse=True,
    )
    rows = tuple(
        (
            clock(r.last_ts),
            str(r.key.sender_pid) if r.key.sender_pid else "-",
            Text(r.sender_comm) if r.key.sender_pid else Text("[kernel]", style="italic"),
            signame(r.key.sig),
            r.key.via,
            str(r.count),
        )
        for r in received
    )
    return Detail(
        title=f"Death of {d.pid}",
        sections=(head, process_text(model, d.pid, "process")),
        tables=(DetailTable("signals it received", ("LAST", "SENDER", "COMM", "SIGNAL", "VIA", "COUNT"), rows),),
    )


class DeathMetrics(TableMetrics):
    """Deaths by signal and cause kind (bounded), counted once each from the model's ledger (--details)."""

    def __init__(self, _options: ExportOptions) -> None:
        self.deaths: Counter[tuple[str, str]] = Counter()
        self._seen = 0

    def after_model(self, model: SignalModel) -> None:
        new = model.deaths_seen - self._seen
        self._seen = model.deaths_seen
        for death in list(model.deaths)[len(model.deaths) - new :] if new else []:
            self.deaths[(signame(death.sig), death.cause_kind)] += 1

    def collect(self) -> Any:
        deaths = CounterMetricFamily(
            "sigtop_process_deaths", "Processes killed by a signal, by signal and cause (with --details)",
            labels=["signal", "cause"],
        )  # fmt: skip
        for (sig, cause), n in sorted(self.deaths.items()):
            deaths.add_metric([sig, cause], n)
        yield deaths


def rows(model: SignalModel) -> Any:
    return ((f"{d.pid}:{d.ts}", d) for d in model.deaths)


SPEC = TableSpec(
    name="deaths",
    title="Deaths",
    key="4",
    columns=COLUMNS,
    default_sort="time",
    rows=rows,
    select=select,
    to_json=to_json,
    detail=detail,
    state=DeathTable,
    metrics=DeathMetrics,
    help="Deaths CAUSE: who or what sent the fatal signal; THREADS: the threads it ended (a fatal signal ends "
    "the whole process: the kernel SIGKILLs each thread).",
    unavailable=lambda model: (
        None
        if model.deaths_followed
        else "deaths are not seen here: they come from the SIGCHLD's siginfo, which only the raw signal_generate "
        "reads (a kernel with BTF)"
    ),
    empty="No process has died of a signal since sigtop started: each one that does shows here, "
    "with who or what sent the signal.",
)
