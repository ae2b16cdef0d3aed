"""The model: batches folded into the tables, composed of small parts each tested alone.

* a process registry (sigtop.registry): pids, generations, names, cgroups, dispositions;
* the tables' rows (sigtop.tables.*): flows, signalfd, sigreturn, deaths, alerts;
* the death ledger (sigtop.model.ledger): who or what killed each process;
* the delivery matcher (sigtop.model.matcher): each generated signal's delivery, where the
  kernel does not time it itself.

Pure: no bcc, no textual, no /proc. Everything it knows arrives in a `Batch`,
so it runs the same on live data, a recording, or a test's list. This module
only routes: counts to their tables, each detail event to the part it is for.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence

from sigtop.alerts import Alert
from sigtop.events import hot_events
from sigtop.model import matcher
from sigtop.model.ledger import DeathLedger
from sigtop.model.matcher import DeliveryMatcher
from sigtop.names import EventKind, Result, printable
from sigtop.registry import ProcessRegistry
from sigtop.tables import TABLES
from sigtop.tables.alerts import AlertTable
from sigtop.tables.base import TableState
from sigtop.tables.deaths import Death, DeathTable
from sigtop.tables.flows import EVENTS_PER_ROW, FlowRow, FlowRowKey, FlowTable
from sigtop.tables.signalfd import SignalfdRow, SignalfdTable
from sigtop.tables.sigreturn import SigreturnRow, SigreturnTable
from sigtop.wire import Batch, FlowKey, KernelStats, ProcInfo, SignalEvent

__all__ = ["EVENTS_PER_ROW", "Death", "FlowRow", "FlowRowKey", "SignalModel", "SignalfdRow", "SigreturnRow"]

# Detail events kept across all rows (~250 bytes each); past it the least
# recently seen rows give up their details first (their counts stay).
MAX_KEPT_EVENTS = 100_000
# Detail events folded per step of fold_steps: ~10 ms of Python here, so a reader between steps (the
# UI's feed, answering a key) waits that long at most, not a storm's whole batch (~120 ms).
EVENTS_PER_STEP = 10_000

# Plain ints for the per-event loop (enum members compare slower).
_GENERATE, _DELIVER = int(EventKind.generate), int(EventKind.deliver)
_UNMATCHED_SIGRETURN, _DELIVERED = int(EventKind.unmatched_sigreturn), int(Result.delivered)
_DEATH, _OOM, _SIGACTION = int(EventKind.death), int(EventKind.oom), int(EventKind.sigaction)
_FLOW_EVENTS = frozenset((_GENERATE, int(EventKind.send_done)))
_RESULT_AT = 7  # the result's place in a flow key tuple (FlowKey.as_tuple)


class SignalModel:
    """Tables of everything seen, with rates over the last interval and bounded memory."""

    def __init__(self, max_rows: int = 20_000) -> None:
        self.max_rows = max_rows
        self.registry = ProcessRegistry()
        # One state of each registered table: every batch folds into each, in the registry's order.
        self.tables: dict[str, TableState] = {name: spec.state() for name, spec in TABLES.items() if spec.state}
        self.flows_table: FlowTable = self.tables["flows"]  # type: ignore[assignment]
        self.signalfd_table: SignalfdTable = self.tables["signalfd"]  # type: ignore[assignment]
        self.sigreturn_table: SigreturnTable = self.tables["sigreturn"]  # type: ignore[assignment]
        self.death_table: DeathTable = self.tables["deaths"]  # type: ignore[assignment]
        self.alert_table: AlertTable = self.tables["alerts"]  # type: ignore[assignment]
        self.ledger = DeathLedger()
        self.matcher = DeliveryMatcher()
        self.stats = KernelStats()
        self.program_misses: Counter[str] = Counter()  # skipped runs by probe
        self.map_fill: dict[str, float] = {}  # how full each kernel map was at the last batch
        self.evicted_rows = 0
        self.events_trimmed = 0  # details given up to stay within MAX_KEPT_EVENTS (counts unaffected)
        self.duration_s = 0.0
        self.last_ts = 0.0
        self.batches = 0
        self.events_received = 0  # detail events decoded (the rest: stats.events_lost, events_dropped)
        self.finished = False
        self._deaths_said: bool | None = None  # what the source said of deaths (None: nothing)
        self.light = False  # the source traced in light mode (--light): names.LIGHT_UNSEEN is unseen

    # ---- the parts' rows, by the names the views use ------------------------------------

    @property
    def flows(self) -> dict[FlowRowKey, FlowRow]:
        return self.flows_table.rows

    @property
    def signalfds(self) -> dict[tuple[int, int], SignalfdRow]:
        return self.signalfd_table.rows

    @property
    def sigreturns(self) -> dict[int | tuple[int, int], SigreturnRow]:
        return self.sigreturn_table.rows

    @property
    def deaths(self) -> deque[Death]:
        return self.death_table.rows

    @property
    def deaths_seen(self) -> int:
        return self.death_table.seen

    @property
    def alerts(self) -> deque[Alert]:
        return self.alert_table.rows

    @property
    def procs(self) -> dict[int, ProcInfo]:
        return self.registry.procs

    @property
    def total_signals(self) -> int:
        return self.flows_table.total_signals

    @property
    def signals_per_sec(self) -> float:
        return self.flows_table.signals_per_sec

    @property
    def fates_followed(self) -> bool:
        return self.flows_table.fates_followed

    @property
    def on_latency(self) -> Callable[[int, int], None] | None:
        return self.matcher.on_latency

    @on_latency.setter
    def on_latency(self, callback: Callable[[int, int], None] | None) -> None:
        self.matcher.on_latency = callback

    @property
    def deaths_followed(self) -> bool:
        """Whether deaths are seen (False: a source that said it cannot; a recording that says
        nothing of it is taken as one that could)."""
        return self._deaths_said is not False

    def proc_of(self, pid: int, gen: int = 0) -> ProcInfo | None:
        return self.registry.proc_of(pid, gen)

    def row_key(self, key: FlowKey) -> FlowRowKey:
        return self.flows_table.row_key(key, self.registry)

    # ---- folding ---------------------------------------------------------

    def apply(self, batch: Batch) -> None:
        """Fold one batch in. Deltas add up; rates cover this batch's interval."""
        for _step in self.fold_steps(batch):
            pass

    def fold_steps(self, batch: Batch) -> Iterator[None]:
        """`apply`, in steps: the batch's counts whole, then its detail events EVENTS_PER_STEP at a
        time, yielding between steps. Between them the model is whole as of the events folded so
        far (every count is in), so a reader may look at it there."""
        self.batches += 1
        self.duration_s += batch.interval_s
        self.last_ts = batch.ts
        self.stats.add(batch.stats)
        self.program_misses.update(batch.program_misses)
        self.map_fill = batch.map_fill or self.map_fill
        self.finished = self.finished or batch.final
        if batch.deaths_followed is not None:
            self._deaths_said = bool(self._deaths_said) or batch.deaths_followed
        self.light = self.light or bool(batch.light)
        for pid, earlier in self.registry.apply(batch):
            self.sigreturn_table.reused(pid, earlier)
        for table in self.tables.values():
            table.fold(batch, self)
        events = batch.events
        for start in range(0, len(events), EVENTS_PER_STEP):
            if start:
                yield
            self.apply_events(events[start : start + EVENTS_PER_STEP])
        self._evict()

    def apply_events(self, events: Sequence[SignalEvent]) -> None:
        """Attach events to their rows and route each kind to its part, for every event.

        A storm brings 100,000 events a second: each is looked at through its
        hot fields, and only those a row keeps (its last EVENTS_PER_ROW)
        become SignalEvents, once, at the end.
        """
        if not events:
            return
        self.events_received += len(events)
        registry, flows, match = self.registry, self.flows_table, self.matcher
        # per distinct flow key: where its events are kept, and the target process
        rows: dict[tuple, tuple[deque[matcher.Slot] | None, int]] = {}
        kept: dict[int, tuple[FlowRow | SigreturnRow, deque[matcher.Slot]]] = {}
        rare: list[int] = []  # deaths, dispositions set, OOM choices: decoded, in order
        hots, ns_per_unit = hot_events(events)
        for index, (ts, kind, tgid, tid, flow, delivered_sig) in enumerate(hots):
            if kind in _FLOW_EVENTS:
                if flow is None:  # an event made by hand without its flow key: it belongs to no row
                    continue
                found = rows.get(flow)
                if found is None:
                    row, process = flows.event_row(flow, registry)
                    found = rows[flow] = (self._kept_for(kept, row) if row else None, process)
                keep, process = found
                generated = matcher.slot(index, ts)
                if keep is not None:
                    keep.append(generated)
                if kind == _GENERATE and flow[_RESULT_AT] == _DELIVERED:
                    match.queued(process, flow[3], generated)
            elif kind == _DELIVER:
                match.delivered(tgid, delivered_sig, ts, tid, ns_per_unit)
            elif kind in (_DEATH, _SIGACTION, _OOM):
                rare.append(index)
            elif kind == _UNMATCHED_SIGRETURN:
                srow = self.sigreturn_table.unmatched_event(tgid, registry)
                self._kept_for(kept, srow).append(matcher.slot(index, ts))
        for index in rare:
            self._rare(events[index])
        for row, slots in kept.values():
            # A row's events are a plain list of its last EVENTS_PER_ROW (a deque's 64-slot block
            # is ~700 bytes however few it holds: 14 MB over 20,000 rows), and events of one flow
            # share one FlowKey (112 bytes and its ints each). A model of 20,000 rows holding
            # 100,000 events: 110 -> 81 MB.
            if not row.events:
                row.events = []
            held = row.events  # appended in place (only this thread reads rows), cut to size below
            last = held[-1] if held else None
            for s in slots:
                event = s[matcher.EVENT] = events[s[matcher.INDEX]]
                event.latency_ns = s[matcher.LATENCY]
                event.taken_tid = s[matcher.TAKEN_BY]
                event.comm, event.target_comm = printable(event.comm), printable(event.target_comm)
                if last is not None and event.flow is not None and event.flow == last.flow:
                    event.flow = last.flow
                held.append(event)
                last = event
            del held[:-EVENTS_PER_ROW]
            if isinstance(row, SigreturnRow) and not row.comm and slots:
                row.comm = slots[-1][matcher.EVENT].comm

    def _rare(self, e: SignalEvent) -> None:
        if e.kind == _DEATH:
            self.death_table.add(self.ledger.death(e, self.flows.values(), self.registry))
        elif e.kind == _SIGACTION:
            self.registry.set_disposition(e.sender_pid, e.sig, e.ts, e.handler)
        elif e.kind == _OOM:
            self.ledger.oom(e)

    @staticmethod
    def _kept_for(kept: dict, row: FlowRow | SigreturnRow) -> deque[matcher.Slot]:
        entry = kept.get(id(row))
        if entry is None:
            entry = kept[id(row)] = (row, deque(maxlen=EVENTS_PER_ROW))
        return entry[1]

    def _evict(self) -> None:
        for table in self.tables.values():
            self.evicted_rows += table.evict(self.max_rows)
        rows = [*self.flows.values(), *self.sigreturns.values()]
        held = sum(len(r.events) for r in rows)
        if held > MAX_KEPT_EVENTS:
            for row in sorted(rows, key=lambda r: r.last_ts):
                held -= len(row.events)
                self.events_trimmed += len(row.events)
                row.events = ()
                if held <= MAX_KEPT_EVENTS * 3 // 4:
                    break

    # ---- user actions ----------------------------------------------------

    def reset(self) -> None:
        """Forget everything, counts and state, as a new model (a replay moved back: it is folded
        again from its first batch)."""
        self.__init__(self.max_rows)  # type: ignore[misc]

    def clear(self) -> None:
        """Forget every count (signalfd state stays: it is state, not a count)."""
        for table in self.tables.values():
            table.clear()
        self.matcher.clear()
        self.duration_s = 0.0
        self.stats = KernelStats()
