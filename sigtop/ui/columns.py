"""The column definitions: what each table shows, how a model row becomes cells, how it sorts.

One presentation per table: the live view (ui.table.SignalTable) and the
plain `sigtop batch` table (report.py) both render from these. No widgets
here (rich only), so the content is testable without a terminal, and the
batch report loads no Textual. Every string a process controls arrives
sanitised by the model and becomes `rich.text.Text`: never markup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from sigtop.containers import container_of
from sigtop.filters import FlowFilter
from sigtop.model import OVERFLOW, Death, FlowRow, SignalfdRow, SignalModel, SigreturnRow
from sigtop.names import Result, errno_name, sfd_flag_names, signal_mask_names, signame
from sigtop.reasons import explain_row, signalfd_health
from sigtop.records import latency_bucket_bounds


def _fmt(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def age(now: float, ts: float) -> str:
    if not ts:
        return "-"
    seconds = max(0.0, now - ts)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def clock(ts: float) -> str:
    if not ts:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


@dataclass(frozen=True)
class Column:
    label: str
    sort_key: Callable[[Any], Any]
    cell: Callable[[Any, float], Text | str]
    numeric: bool = False
    # When the terminal is too narrow for every column, the lowest priority
    # goes first: a table keeps who, what and the outcome longest.
    priority: int = 50
    # Meaningful only while watching (the last interval's rate, time since):
    # the batch report, printed once at the end, leaves these out.
    live_only: bool = False
    # Derived per row by the table's `annotate` (REASON): worked out for every
    # row only when the table sorts by it, else for the rows shown.
    derived: bool = False


def _num(get: Callable[[Any], float], style: Callable[[Any], str] | None = None) -> Callable[[Any, float], Text]:
    # Sorting reads the model's numbers (Column.sort_key), never the cell text.
    return lambda row, _now: Text(_fmt(get(row)), style=style(row) if style else "", justify="right")


def _pid(get: Callable[[Any], int]) -> Callable[[Any, float], Text]:
    # A pid is an identifier, not a quantity: no thousands separators.
    return lambda row, _now: Text(str(get(row)), justify="right")


def _sender(row: FlowRow) -> str:
    if row.key.via == OVERFLOW:
        return "*"
    return str(row.key.sender_pid) if row.key.sender_pid else "-"


def _sender_comm(row: FlowRow) -> Text:
    if row.key.via == OVERFLOW:
        return Text("[map full]", style="bold red")
    if not row.key.sender_pid:
        return Text("[kernel]", style="italic")
    if row.sender_comm_now:  # it exec'd: the name it sent under, then its name now
        return Text(f"{row.sender_comm}→{row.sender_comm_now}")
    return Text(row.sender_comm)


def _target(row: FlowRow) -> str:
    k = row.key
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


def _via(row: FlowRow) -> Text:
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


def duration(ns: int) -> str:
    """A latency, short: 850ns, 12µs, 3.4ms, 2.1s."""
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.3g}µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.3g}ms"
    return f"{ns / 1e9:.3g}s"


def _fate(get: Callable[[FlowRow], int], style: str = "") -> Callable[[FlowRow, float], Text]:
    """A fate count; '-' where fates are not followed (no BTF, an old recording) or nothing was queued."""

    def cell(row: FlowRow, _now: float) -> Text:
        if not row.fates or not row.queued:
            return Text("-", justify="right", style="dim")
        n = get(row)
        return Text(_fmt(n), style=style if n else "", justify="right")

    return cell


def fates_text(row: FlowRow, now: float) -> Text:
    """The drill-down's account of what became of the flow's queued signals."""
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


def _p99(row: FlowRow) -> int:
    return row.latency.quantile(0.99) if row.latency is not None else 0


def _p99_cell(row: FlowRow, _now: float) -> Text:
    if row.latency is None or not row.latency.count:
        return Text("-", justify="right", style="dim")
    return Text(duration(_p99(row)), justify="right")


FLOW_COLUMNS = [
    Column("SENDER", lambda r: r.key.sender_pid, lambda r, _n: Text(_sender(r), justify="right"), True, 100),
    Column(
        "COMM",
        lambda r: r.sender_comm if r.key.sender_pid else "",
        lambda r, _n: _sender_comm(r),
        priority=78,
    ),
    Column("TARGET", lambda r: r.key.target_pid, lambda r, _n: Text(_target(r), justify="right"), True, 100),
    Column("COMM", lambda r: r.target_comm, lambda r, _n: Text(r.target_comm), priority=75),
    Column("SIGNAL", lambda r: r.key.sig, lambda r, _n: signame(r.key.sig), priority=95),
    Column("VIA", lambda r: (r.key.via, r.key.spoofed), lambda r, _n: _via(r), priority=76),
    Column("COUNT", lambda r: r.count, _num(lambda r: r.count), True, 90),
    Column("RATE/s", lambda r: r.rate, _num(lambda r: r.rate), True, 30, live_only=True),
    Column(
        "LAST", lambda r: r.last_ts, lambda r, now: Text(age(now, r.last_ts), justify="right"), True, 20, live_only=True
    ),
    # Queued (the kernel's TRACE_SIGNAL_DELIVERED), then what became of them.
    Column("QUEUED", lambda r: r.queued, _num(lambda r: r.queued), True, 85),
    Column("TAKEN", lambda r: r.received, _fate(lambda r: r.received), True, 52),
    Column("PEND", lambda r: r.pending, _fate(lambda r: r.pending, "bold yellow"), True, 86),
    Column("DISC", lambda r: r.discarded, _fate(lambda r: r.discarded, "red"), True, 50),
    Column("P99", _p99, _p99_cell, True, 35),
    Column("IGN", lambda r: r.results[Result.ignored], _num(lambda r: r.results[Result.ignored]), True, 85),
    Column(
        "MERGED",
        lambda r: r.results[Result.already_pending],
        _num(lambda r: r.results[Result.already_pending]),
        True,
        72,
    ),
    Column(
        "LOST",
        lambda r: r.results[Result.overflow_fail],
        _num(lambda r: r.results[Result.overflow_fail], lambda r: "red" if r.results[Result.overflow_fail] else ""),
        True,
        85,
    ),
    Column("FAILED", lambda r: r.failed, lambda r, _n: Text(_failed(r), style="red"), True, 80),
    # Why the signals did not (all) take effect: blocked and pending, ignored, dropped by an init, ...
    Column("REASON", lambda r: r.reason, lambda r, _n: Text(r.reason, style="yellow"), priority=81, derived=True),
    Column("PROBES", lambda r: r.results[Result.no_signal], _num(lambda r: r.results[Result.no_signal]), True, 10),
    # Containers or services of both ends ("" on the host): the first to hide when narrow.
    Column("CONTAINER", lambda r: (r.sender_container, r.target_container), lambda r, _n: _containers(r), priority=5),
]

SIGNALFD_COLUMNS = [
    Column("PID", lambda r: r.pid, _pid(lambda r: r.pid), True, 100),
    Column("COMM", lambda r: r.comm, lambda r, _n: Text(r.comm), priority=60),
    Column("FD", lambda r: r.fd, _num(lambda r: r.fd), True, 90),
    Column("MASK", lambda r: r.mask, lambda r, _n: " ".join(signal_mask_names(r.mask)) or "-", priority=95),
    Column("FLAGS", lambda r: r.flags, lambda r, _n: " ".join(sfd_flag_names(r.flags)) or "-", priority=50),
    Column("CALLS", lambda r: r.calls, _num(lambda r: r.calls), True, 85),
    # Signals of the mask some thread does not block: they go to a handler or the default action.
    Column("UNBLOCKED", lambda r: r.health, lambda r, _n: Text(r.health, style="bold red"), priority=88, derived=True),
    Column(
        "LAST CHANGE",
        lambda r: r.last_ts,
        lambda r, now: Text(age(now, r.last_ts), justify="right"),
        True,
        20,
        live_only=True,
    ),
]

SIGRETURN_COLUMNS = [
    Column("PID", lambda r: r.pid, _pid(lambda r: r.pid), True, 100),
    Column("COMM", lambda r: r.comm, lambda r, _n: Text(r.comm), priority=60),
    Column("SIGRET/s", lambda r: r.rate, _num(lambda r: r.rate), True, 90, live_only=True),
    Column("TOTAL", lambda r: r.sigreturns, _num(lambda r: r.sigreturns), True, 85),
    Column("HANDLED/s", lambda r: r.handler_rate, _num(lambda r: r.handler_rate), True, 50, live_only=True),
    Column(
        "BALANCE", lambda r: r.balance, _num(lambda r: r.balance, lambda r: "red" if r.balance < 0 else ""), True, 80
    ),
    Column(
        "UNMATCHED",
        lambda r: r.unmatched,
        _num(lambda r: r.unmatched, lambda r: "bold red" if r.unmatched else ""),
        True,
        95,
    ),
]


def _lifetime(d: Death) -> str:
    if d.lifetime_s is None:
        return "-"
    return age(d.ts, d.ts - d.lifetime_s)


DEATH_COLUMNS = [
    Column("TIME", lambda d: d.ts, lambda d, _n: clock(d.ts), priority=90),
    Column("PID", lambda d: d.pid, _pid(lambda d: d.pid), True, 100),
    Column("COMM", lambda d: d.comm, lambda d, _n: Text(d.comm), priority=95),
    Column("SIGNAL", lambda d: d.sig, lambda d, _n: signame(d.sig), priority=100),
    Column("CORE", lambda d: d.core, lambda d, _n: "core" if d.core else "", priority=40),
    Column("LIVED", lambda d: d.lifetime_s or 0, lambda d, _n: Text(_lifetime(d), justify="right"), True, 30),
    Column("CAUSE", lambda d: d.cause, lambda d, _n: Text(d.cause), priority=99),
    # Its container or service, else its cgroup path (as it was when it died).
    Column("CGROUP", lambda d: d.cgroup, lambda d, _n: Text(container_of(d.cgroup).label or d.cgroup), priority=35),
]


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    columns: list[Column]
    default_sort: int
    rows: Callable[[SignalModel, FlowFilter], list[tuple[str, Any]]]
    # Sets the derived columns' values on the rows given (see Column.derived).
    annotate: Callable[[SignalModel, list[Any]], None] | None = None


def _flow_rows(model: SignalModel, flt: FlowFilter) -> list[tuple[str, FlowRow]]:
    return [(repr(k), r) for k, r in model.flows.items() if not flt or flt.matches_flow(r)]


def _flow_reasons(model: SignalModel, rows: list[FlowRow]) -> None:
    now = model.last_ts or time.time()
    for row in rows:
        row.reason = explain_row(model, row, now).short


def _death_rows(model: SignalModel, flt: FlowFilter) -> list[tuple[str, Death]]:
    return [
        (f"{d.pid}:{d.ts}", d)
        for d in model.deaths
        if not flt or flt.matches_pid_comm(d.pid, d.comm, _container(model, d.pid))
    ]


def _container(model: SignalModel, pid: int) -> str:
    info = model.procs.get(pid)
    return container_of(info.cgroup).label if info else ""


def health_text(problems: dict[int, list[int]]) -> str:
    """'SIGURG: tid 12, 14' for each signal of a signalfd's mask some thread does not block."""
    parts = []
    for sig, tids in sorted(problems.items()):
        shown = ", ".join(str(t) for t in tids[:3]) + (f" +{len(tids) - 3}" if len(tids) > 3 else "")
        parts.append(f"{signame(sig)}: tid {shown}")
    return "; ".join(parts)


def _signalfd_health(model: SignalModel, rows: list[SignalfdRow]) -> None:
    for row in rows:
        row.health = health_text(signalfd_health(row.mask, model.dispositions.get(row.pid)))


def _signalfd_rows(model: SignalModel, flt: FlowFilter) -> list[tuple[str, SignalfdRow]]:
    return [
        (f"{k[0]}:{k[1]}", r)
        for k, r in model.signalfds.items()
        if not flt or flt.matches_pid_comm(r.pid, r.comm, _container(model, r.pid))
    ]


def _sigreturn_rows(model: SignalModel, flt: FlowFilter) -> list[tuple[str, SigreturnRow]]:
    return [
        (str(k), r)
        for k, r in model.sigreturns.items()
        if not flt or flt.matches_pid_comm(r.pid, r.comm, _container(model, r.pid))
    ]


TABLES = {
    "flows": TableSpec("flows", "Flows", FLOW_COLUMNS, 6, _flow_rows, _flow_reasons),
    "signalfd": TableSpec("signalfd", "Signalfd", SIGNALFD_COLUMNS, 6, _signalfd_rows, _signalfd_health),
    "sigreturn": TableSpec("sigreturn", "Sigreturn", SIGRETURN_COLUMNS, 3, _sigreturn_rows),
    "deaths": TableSpec("deaths", "Deaths", DEATH_COLUMNS, 0, _death_rows),
}


def sorted_rows(
    spec: TableSpec, model: SignalModel, flt: FlowFilter, column: int, descending: bool, limit: int | None = None
) -> list[tuple[str, Any]]:
    """The rows to show, sorted; only the top `limit` (the model keeps the rest)."""
    rows = spec.rows(model, flt)
    by = spec.columns[column]
    if spec.annotate is not None and by.derived:  # sorted by a derived value: every row needs it
        spec.annotate(model, [row for _key, row in rows])
    rows.sort(key=lambda item: (by.sort_key(item[1]), item[0]), reverse=descending)
    shown = rows if limit is None else rows[:limit]
    if spec.annotate is not None and not by.derived:
        spec.annotate(model, [row for _key, row in shown])
    return shown


def cells(spec: TableSpec, row: Any, now: float) -> list[Text | str]:
    return [c.cell(row, now) for c in spec.columns]
