"""The signalfd table: each signalfd of each process, its mask, flags and calls, and whether its
signals can reach it (a signal some thread does not block goes to that thread's handler or default
action, never to the fd)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text

from sigtop.names import printable, sfd_flag_names, signal_mask_names, signame
from sigtop.reasons import signalfd_health
from sigtop.tables.base import (
    Column,
    Detail,
    DetailTable,
    SignalModel,
    TableSpec,
    TableState,
    View,
    by,
    evict_fairly,
    num,
    pid_cell,
    process_text,
)
from sigtop.timefmt import age, clock
from sigtop.wire import Batch

if TYPE_CHECKING:
    from sigtop.filters import FlowFilter

HISTORY_POINTS = 120


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
    owner_uid: int = -1  # its user, as /proc said (-1: not known), for fair eviction


class SignalfdTable(TableState):
    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], SignalfdRow] = {}

    def fold(self, batch: Batch, model: SignalModel) -> None:
        for state in batch.signalfds:
            key = (state.pid, state.fd)
            row = self.rows.get(key)
            if row is None or (state.created_ts and state.created_ts != row.created_ts):
                row = self.rows[key] = SignalfdRow(state.pid, state.fd, created_ts=state.created_ts)
            if row.owner_uid == -1:
                info = model.registry.procs.get(state.pid)
                row.owner_uid = info.uid if info else -1
            if not row.history or row.history[-1][1] != state.mask:
                row.history.append((state.last_ts, state.mask))
            row.comm = printable(state.comm)
            row.mask = state.mask
            row.flags = state.flags
            row.calls += state.calls
            row.last_ts = state.last_ts

    def evict(self, max_rows: int) -> int:
        """From the users holding most rows, least recently changed first."""
        return len(evict_fairly(self.rows, max_rows, lambda r: r.owner_uid, lambda r: r.last_ts))

    def clear(self) -> None:
        """Calls are counts, and go; the fds and their masks are state, and stay."""
        for row in self.rows.values():
            row.calls = 0


def health_text(problems: dict[int, list[int]]) -> str:
    """'SIGINT SIGURG: tid 12, 14' for the signals of a signalfd's mask some thread does not
    block, those unblocked by the same threads together."""
    by_threads: dict[tuple[int, ...], list[int]] = {}
    for sig, tids in sorted(problems.items()):
        by_threads.setdefault(tuple(tids), []).append(sig)
    parts = []
    for tids, sigs in by_threads.items():
        shown = ", ".join(str(t) for t in tids[:3]) + (f" +{len(tids) - 3}" if len(tids) > 3 else "")
        parts.append(f"{' '.join(signame(s) for s in sigs)}: tid {shown}")
    return "; ".join(parts)


def health(row: SignalfdRow, view: View) -> str:
    return view.derived(
        "health", row, lambda: health_text(signalfd_health(row.mask, view.model.registry.dispositions.get(row.pid)))
    )


COLUMNS = (
    Column("pid", "PID", by(lambda r: r.pid), pid_cell(lambda r: r.pid), True, 100),
    Column("comm", "COMM", by(lambda r: r.comm), lambda r, _v: Text(r.comm), priority=60),
    Column("fd", "FD", by(lambda r: r.fd), num(lambda r: r.fd), True, 90),
    Column("mask", "MASK", by(lambda r: r.mask), lambda r, _v: " ".join(signal_mask_names(r.mask)) or "-", priority=95),
    Column("flags", "FLAGS", by(lambda r: r.flags), lambda r, _v: " ".join(sfd_flag_names(r.flags)) or "-",
           priority=50),
    Column("calls", "CALLS", by(lambda r: r.calls), num(lambda r: r.calls), True, 85),
    # Signals of the mask some thread does not block: they go to a handler or the default action.
    Column("unblocked", "UNBLOCKED", health, lambda r, v: Text(health(r, v), style="bold red"), priority=88,
           min_width=16),
    Column("last", "LAST CHANGE", by(lambda r: r.last_ts), lambda r, v: Text(age(v.now, r.last_ts), justify="right"),
           True, 20, live_only=True),
)  # fmt: skip


def select(model: SignalModel, row: SignalfdRow, flt: FlowFilter) -> bool:
    signals = [n for n in range(1, 65) if row.mask >> (n - 1) & 1]
    return flt.matches((row.pid,), (row.comm,), signals, (model.registry.container(row.pid),))


def to_json(model: SignalModel, r: SignalfdRow) -> dict[str, Any]:
    return {
        "pid": r.pid,
        "comm": r.comm,
        "fd": r.fd,
        "mask": r.mask,
        "signals": signal_mask_names(r.mask),
        "flags": sfd_flag_names(r.flags),
        "calls": r.calls,
        "created_before_trace": not r.created_ts,
        # Signals of the mask some thread does not block, with those threads: they go to a
        # handler or the default action, never to the fd.
        "unblocked": {
            signame(sig): tids for sig, tids in signalfd_health(r.mask, model.registry.dispositions.get(r.pid)).items()
        },
    }


def detail(model: SignalModel, r: SignalfdRow) -> Detail:
    head = Text()
    head.append("signalfd  ", style="bold")
    head.append(f"pid {r.pid} {r.comm}  fd {r.fd}  flags {' '.join(sfd_flag_names(r.flags)) or '-'}  ")
    head.append(f"calls {r.calls}  created {clock(r.created_ts) if r.created_ts else 'before tracing'}\n")
    head.append(f"mask now: {' '.join(signal_mask_names(r.mask)) or '-'}")
    problems = signalfd_health(r.mask, model.registry.dispositions.get(r.pid))
    if problems:
        head.append(
            f"\nunblocked: {health_text(problems)}: those threads take these signals themselves "
            "(handler or default action); the fd never sees them",
            style="bold red",
        )
    history = tuple((clock(ts), " ".join(signal_mask_names(mask)) or "-") for ts, mask in reversed(r.history))
    return Detail(
        title=f"signalfd {r.fd} of {r.pid}",
        sections=(head, process_text(model, r.pid, "process")),
        tables=(DetailTable("mask changes", ("TIME", "MASK"), history),),
    )


def rows(model: SignalModel) -> Any:
    return ((f"{k[0]}:{k[1]}", r) for k, r in model.signalfds.items())


SPEC = TableSpec(
    name="signalfd",
    title="Signalfd",
    key="2",
    plain_title=lambda _doc: "signalfd",
    columns=COLUMNS,
    default_sort="last",
    rows=rows,
    select=select,
    to_json=to_json,
    detail=detail,
    json_order=lambda r: (r.pid, r.fd),
    state=SignalfdTable,
    unavailable=lambda model: (
        "--light attaches no syscall tracepoint, and a signalfd is made and changed by syscalls only"
        if model.light
        else None
    ),
    empty="No signalfd seen yet: a signalfd appears when a process creates one or changes its mask "
    "(signalfd, signalfd4) while sigtop runs; one made before sigtop started appears at its next change.",
)
