"""The model's own thread: batches folded off the UI loop, one immutable snapshot out per tick.

memray's TUI does the same: a plain thread owned by the app folds the data
and posts snapshots; the UI only draws them, so a storm's fold never stands
between a key press and its answer. Everything that reads the model (the
rows of the table shown, sorted and filtered; a row's drill-down) runs here;
the UI asks for it through `view`, `detail` and `clear`, and receives it
through the `publish` and reply callbacks (thread-safe: Textual's
post_message). No Textual here: the feed is tested on its own.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sigtop.filters import FlowFilter
from sigtop.model import SignalModel
from sigtop.tables import TABLES
from sigtop.tables.base import Cell, Detail, View
from sigtop.tables.flows import evicted_json, evicted_summary
from sigtop.wire import Batch, KernelStats

MAX_TABLE_ROWS = 500
EARLY_GAP_S = 0.2  # at most five early snapshots a second, however the batches come


@dataclass(frozen=True)
class ViewSettings:
    """What the user asked to see: which table, each table's sort, the filter."""

    table: str = "flows"
    sorts: tuple[tuple[str, str, bool], ...] = ()  # (table, column name, descending); the rest: defaults
    flt: FlowFilter = field(default_factory=FlowFilter)
    limit: int = MAX_TABLE_ROWS
    fold: bool = True  # one-off senders (each child's SIGCHLD) as one row per name (f toggles)
    group: str = ""  # rows summed by sender name, target or signal ("" none; g cycles)
    tree: bool = False  # flows under their sender's ancestors (T toggles; grouping is off meanwhile)

    def sort(self, table: str) -> tuple[str, bool]:
        for name, column, descending in self.sorts:
            if name == table:
                return column, descending
        return TABLES[table].default_sort, True

    def sorted_by(self, table: str, column: str, descending: bool) -> ViewSettings:
        others = tuple(s for s in self.sorts if s[0] != table)
        return dataclasses.replace(self, sorts=(*others, (table, column, descending)))

    def showing(self, table: str) -> ViewSettings:
        return dataclasses.replace(self, table=table)

    def filtered(self, flt: FlowFilter) -> ViewSettings:
        return dataclasses.replace(self, flt=flt)

    def folding(self, fold: bool) -> ViewSettings:
        return dataclasses.replace(self, fold=fold)

    def grouped(self, group: str) -> ViewSettings:
        return dataclasses.replace(self, group=group, tree=False if group else self.tree)

    def treed(self, tree: bool) -> ViewSettings:
        return dataclasses.replace(self, tree=tree, group="" if tree else self.group)


@dataclass(frozen=True)
class TableView:
    """One table's rows as they are to be shown: at most `limit` of `selected`, sorted."""

    name: str
    sort: str
    descending: bool
    keys: tuple[str, ...]
    cells: tuple[tuple[Cell, ...], ...]  # every column's cell of each row, in the spec's order
    selected: int  # rows the filter selected (the model may hold more)
    total: int  # rows the table holds
    unavailable: str | None = None  # why this source cannot fill the table at all
    containers: tuple[str, ...] = ()  # each row's container (the spec's `container`), where it has one


@dataclass(frozen=True)
class Totals:
    """The header's facts."""

    signals_per_sec: float
    total_signals: int
    flows: int
    alerts: int
    stats: KernelStats
    map_fill: dict[str, float]
    finished: bool
    last_ts: float
    batches: int
    evicted_rows: int = 0  # rows given up to the row cap, in every table
    evicted_top: str = ""  # whose, most signals first (tables.flows.evicted_json)
    events_kept: int = 0  # detail events decoded (stats.events_dropped: skipped by sigtop's own budget)
    light: bool = False  # traced in light mode: the header says what that cannot see


@dataclass(frozen=True)
class Snapshot:
    seq: int
    settings: ViewSettings
    table: TableView
    totals: Totals
    rows: dict[str, int]  # rows held, by table
    state: str  # attaching, live, replay, replay end, failed
    error: str | None = None


class ModelFeed:
    """Owns the model; fed batches by a source, asked for views and details by the UI."""

    def __init__(
        self,
        model: SignalModel,
        publish: Callable[[Snapshot], None],
        tick_s: float = 1.0,
        settings: ViewSettings | None = None,
        live: bool = True,
    ) -> None:
        self.model = model
        self.publish = publish
        self.tick_s = tick_s
        self.settings = settings or ViewSettings()
        self.live = live
        self.state = "attaching" if live else "replay"  # the app says when a live source is attached
        self.error: str | None = None
        self.seq = 0
        self.idle = threading.Event()  # nothing queued, and what is folded is published
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._folded = False  # a batch folded that no snapshot shows yet
        self._wanted = self.settings  # the settings the UI asked for last (any thread writes it)
        self._answered: ViewSettings | None = None  # settings published between a fold's steps
        self._published_at = 0.0

    # ---- from other threads -------------------------------------------------------------

    def put(self, batch: Batch) -> None:
        """A source's batch (any thread)."""
        self.idle.clear()
        self._inbox.put(("batch", batch))

    def view(self, settings: ViewSettings) -> None:
        """Show these settings (a snapshot follows at once, also in the middle of a storm's batch)."""
        self.idle.clear()
        self._wanted = settings  # seen between the fold's steps, before the inbox gets to it
        self._inbox.put(("view", None))  # the item only wakes the thread: the settings are _wanted

    def clear(self) -> None:
        """Forget all counts (a snapshot follows at once)."""
        self.idle.clear()
        self._inbox.put(("clear", None))

    def reset(self) -> None:
        """Forget everything, state too: a replay is about to be folded again from its start."""
        self.idle.clear()
        self._inbox.put(("reset", None))

    def detail(self, table: str, key: str, reply: Callable[[Detail | None], None]) -> None:
        """A row's drill-down, handed to `reply` (None: the row is gone)."""
        self._inbox.put(("detail", (table, key, reply)))

    def backlog(self) -> int:
        """Items waiting for the model's thread (a streamed replay waits while there are many)."""
        return self._inbox.qsize()

    def fail(self, error: str) -> None:
        """The source failed (one line)."""
        self.idle.clear()
        self._inbox.put(("fail", error))

    def run(self, function: Callable[[SignalModel], Any], reply: Callable[[Any], None]) -> None:
        """Run `function(model)` on the feed's thread and hand its result to `reply` (for the UI's
        actions that read the model, and for tests)."""
        self._inbox.put(("run", (function, reply)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sigtop-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._inbox.put(("stop", None))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ---- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            wait = max(0.0, next_tick - time.monotonic())
            try:
                item = self._inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            now_due = False
            while item is not None:
                if item[0] == "stop":
                    return
                now_due = self._handle(item) or now_due
                self._folded |= item[0] == "batch"
                if time.monotonic() >= next_tick:
                    break  # a tick is due: publish now, the rest waits (a storm never hides the view)
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    item = None
            if self._folded and self._inbox.empty():
                # All that came is folded: show it without waiting out the tick (a live batch is on
                # screen as it arrives), but not more often than EARLY_GAP_S (a replay's burst).
                next_tick = min(next_tick, self._published_at + EARLY_GAP_S)
            if now_due or time.monotonic() >= next_tick:
                self._publish()
                self._folded, self._published_at = False, time.monotonic()
                next_tick = self._published_at + self.tick_s
            if self._inbox.empty() and not self._folded:
                self.idle.set()  # what was folded is published: a test may read the screen now

    def _handle(self, item: tuple[str, Any]) -> bool:
        """Take one item; whether the view must be published now (not at the next tick)."""
        kind, value = item
        if kind == "batch":
            for _step in self.model.fold_steps(value):
                self._answer_view()  # a key pressed in a storm is answered within a step, not a batch
            if value.final and not self.live:
                self.state = "replay end"
            return bool(value.final)
        if kind == "view":
            self.settings = self._wanted  # the newest asked for (an older item is already stale)
            if self._answered is self.settings:  # published between a fold's steps already
                self._answered = None
                return False
            return True
        if kind == "clear":
            self.model.clear()
            return True
        if kind == "reset":
            self.model.reset()
            self.state = "replay"
            return False  # shown once the replay has caught up (the app asks then)
        if kind == "fail":
            self.error, self.state = value, "failed"
            return True
        if kind == "detail":
            table, key, reply = value
            spec = TABLES[table]
            rows = spec.view_rows(list(spec.rows(self.model)), self.settings.fold, self.settings.group)
            row = next((r for k, r in rows if k == key), None)
            reply(spec.detail(self.model, row) if row is not None else None)
            return False
        if kind == "run":
            function, reply = value
            reply(function(self.model))
            return False
        if kind == "state":
            self.state = value
            return True
        return False

    def set_state(self, state: str) -> None:
        self.idle.clear()
        self._inbox.put(("state", state))

    def snapshot(self) -> Snapshot:
        """The model as the current settings show it (on the feed's thread)."""
        model, settings = self.model, self.settings
        spec = TABLES[settings.table]
        column, descending = settings.sort(settings.table)
        if column not in spec.column_names():
            column, descending = spec.default_sort, True
        view = View(model)
        rows = spec.sorted_rows(
            model,
            settings.flt,
            column,
            descending,
            view=view,
            fold=settings.fold,
            group=settings.group,
            tree=settings.tree,
        )
        shown = rows[: settings.limit]
        table = TableView(
            name=spec.name,
            sort=column,
            descending=descending,
            keys=tuple(key for key, _row in shown),
            cells=tuple(tuple(c.cell(row, view) for c in spec.columns) for _key, row in shown),
            selected=len(rows),
            total=sum(1 for _ in spec.rows(model)),
            unavailable=spec.unavailable(model) if spec.unavailable is not None else None,
            containers=tuple(spec.container(row) for _key, row in shown) if spec.container is not None else (),
        )
        totals = Totals(
            signals_per_sec=model.signals_per_sec,
            total_signals=model.total_signals,
            flows=len(model.flows),
            alerts=len(model.alerts),
            stats=KernelStats(**{f: getattr(model.stats, f) for f in model.stats.__dataclass_fields__}),
            map_fill=dict(model.map_fill),
            finished=model.finished,
            last_ts=model.last_ts,
            batches=model.batches,
            evicted_rows=model.evicted_rows,  # every table's, exact (the per-user totals below are capped)
            evicted_top=evicted_summary(evicted_json(model.flows_table), most=2),
            events_kept=model.events_received,
            light=model.light,
        )
        counts = {name: sum(1 for _ in s.rows(model)) for name, s in TABLES.items()}
        self.seq += 1
        return Snapshot(self.seq, settings, table, totals, counts, self.state, self.error)

    def _answer_view(self) -> None:
        """Between two steps of a fold: publish at once if the UI asked for other settings."""
        wanted = self._wanted
        if wanted != self.settings:
            self.settings = self._answered = wanted
            self._publish()

    def _publish(self) -> None:
        self.publish(self.snapshot())
