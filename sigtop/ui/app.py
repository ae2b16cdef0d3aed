"""The live view: a top-like Textual app over any `Source` (live BPF or a recording).

The source is passed in, never created here, and the app knows it only
through the protocol in sigtop.source. Its batches arrive on the event loop
through a BatchQueue; once per refresh the app folds them into the model and
re-renders the visible table (one update per tick, never one per signal).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import termios
from collections import deque
from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from sigtop.filters import FilterError, FlowFilter
from sigtop.model import SignalModel
from sigtop.names import printable
from sigtop.records import Batch, SignalEvent
from sigtop.source import BatchQueue, Source
from sigtop.ui.columns import TABLES, sorted_rows
from sigtop.ui.screens import AlertsScreen, HelpScreen, detail_screen
from sigtop.ui.table import SignalTable

MAX_TABLE_ROWS = 500
TERMINAL_CHECK_S = 0.5
MAP_PRESSURE = 0.75
EVENTS_PER_STEP = 2_000  # detail events folded between two looks at the keyboard (~2 ms)
STEP_PAUSE_S = 0.001


class SigtopApp(App[int]):
    """sigtop's main screen."""

    TITLE = "sigtop"
    CSS = """
    #header { height: 1; background: $boost; padding: 0 1; }
    #filter-bar { height: auto; display: none; }
    #filter-bar.visible { display: block; }
    #filter-error { color: $error; padding: 0 1; height: auto; }
    DataTable { height: 1fr; }
    .proc { padding: 1 0 0 0; }
    #help { width: 90; height: auto; border: round $accent; padding: 1 2; background: $panel; }
    HelpScreen { align: center middle; }
    """
    BINDINGS = [
        Binding("q,f10", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark,f1", "help", "Help"),
        Binding("slash,f4", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("1", "show_table('flows')", "Flows"),
        Binding("2", "show_table('signalfd')", "Signalfd"),
        Binding("3", "show_table('sigreturn')", "Sigreturn"),
        Binding("4", "show_table('deaths')", "Deaths"),
        Binding("a", "alerts", "Alerts"),
        Binding("less_than_sign", "sort_column(-1)", "Sort <"),
        Binding("greater_than_sign", "sort_column(1)", "Sort >"),
        Binding("I", "invert_sort", "Invert"),
        Binding("space,p", "pause", "Pause"),
        Binding("c", "clear", "Clear"),
    ]

    def __init__(self, source: Source, flow_filter: FlowFilter | None = None, refresh_s: float = 1.0) -> None:
        super().__init__()
        self.source = source
        self.model = SignalModel()
        self.flow_filter = flow_filter or FlowFilter()
        self.refresh_s = refresh_s
        self.paused = False
        self.queue = BatchQueue()
        self._event_backlog: deque[Sequence[SignalEvent]] = deque()
        self._stepper: asyncio.Task[None] | None = None
        self.active = "flows"
        self.failure: str | None = None  # why the app ended itself, for the CLI to print
        self._terminal: int | None = None

    # ---- layout ------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        with TabbedContent(initial="flows", id="tabs"):
            for name, spec in TABLES.items():
                with TabPane(spec.title, id=name):
                    yield SignalTable(spec, id=f"table-{name}")
        with Static(id="filter-bar"):
            yield Input(
                placeholder="pid:1234 comm:nginx sig:TERM ctr:docker   (Enter applies, Esc clears)", id="filter"
            )
            yield Static(id="filter-error")
        yield Footer()

    def on_mount(self) -> None:
        # The main screen's widgets, also while a detail screen is on top.
        self._main = self.screen
        loop = asyncio.get_running_loop()
        # SIGHUP with the terminal still there (a closed ssh session's
        # shell, `kill -HUP`): end like SIGTERM, restoring the terminal.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(signum, self.exit)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): nothing to hook
        self._terminal = self._terminal_fd()
        self.source.start(loop, self.queue.put)
        self.set_interval(self.refresh_s, self.refresh_view)
        if self._terminal is not None:
            self.set_interval(TERMINAL_CHECK_S, self._check_terminal)
        self.refresh_view()
        self.table("flows").focus()
        # Everything built so far (modules, the widget tree) lives as long as
        # the app: out of the collector's sight, a full collection in a storm
        # walks only what the storm made (tens of ms instead of ~100).
        gc.freeze()

    def on_unmount(self) -> None:
        self.source.stop()

    def table(self, name: str) -> SignalTable:
        return self._main.query_one(f"#table-{name}", SignalTable)

    @property
    def sort(self) -> dict[str, tuple[int, bool]]:
        """Each table's sort: (column index, descending)."""
        return {name: (self.table(name).sort_column, self.table(name).descending) for name in TABLES}

    # ---- data --------------------------------------------------------------

    def refresh_view(self) -> None:
        """Fold every batch that arrived; re-render unless paused."""
        for batch in self.queue.get_all():
            self.ingest(batch)
        try:
            self.render_header()
            if not self.paused:
                self.render_table(self.active)
        except NoMatches:  # a timer tick while the app shuts down
            pass

    def ingest(self, batch: Batch) -> None:
        """Counts now; detail events now if few, else in slices between the UI's own work.

        A storm brings 100,000 events a second, about 0.1 s of folding: done
        in one go, it would hold up key presses for that long.
        """
        self.model.apply(batch, with_events=False)
        if batch.events:
            self._event_backlog.append(batch.events)
            if self._stepper is None or self._stepper.done():
                if len(self._event_backlog) == 1 and len(batch.events) <= EVENTS_PER_STEP:
                    self.model.apply_events(self._event_backlog.popleft())
                else:
                    self._stepper = asyncio.get_running_loop().create_task(self._step_events())
        if batch.final and self.source.error:
            # The source is dead: a frozen view saying LIVE would be a lie.
            self.end(self.source.error)

    def end(self, failure: str) -> None:
        """Exit with a one-line reason and a non-zero status (the CLI prints it once the terminal is restored)."""
        self.failure = failure
        self.exit(return_code=1)

    @staticmethod
    def _terminal_fd() -> int | None:
        """The terminal the app draws on, if it runs on one (not under a test's headless driver)."""
        try:
            fd = sys.__stdin__.fileno() if sys.__stdin__ is not None else -1
        except (OSError, ValueError):
            return None
        return fd if fd >= 0 and os.isatty(fd) else None

    def _check_terminal(self) -> None:
        """End when the terminal has gone (hung up with SIGHUP ignored): Textual's input thread
        would spin on its EOF forever, and nobody is watching."""
        try:
            termios.tcgetattr(self._terminal)
        except (termios.error, OSError):
            self.end("the terminal went away")

    async def _step_events(self) -> None:
        while self._event_backlog:
            events = self._event_backlog.popleft()
            for start in range(0, len(events), EVENTS_PER_STEP):
                self.model.apply_events(events[start : start + EVENTS_PER_STEP])
                # Not sleep(0): a key travels through several message hops,
                # each of which would otherwise wait behind the next slice.
                await asyncio.sleep(STEP_PAUSE_S)

    def render_header(self) -> None:
        m = self.model
        text = Text()
        text.append("sigtop ", style="bold")
        text.append(f"{m.signals_per_sec:,.0f} sig/s  total {m.total_signals:,}  flows {len(m.flows):,}  ")
        if m.alerts:
            text.append(f"ALERTS {len(m.alerts)} (a)  ", style="bold white on red")
        # Every loss, kernel or user space: counts are exact unless the first two say otherwise.
        if m.stats.signals_missed:
            text.append(f"UNCOUNTED {m.stats.signals_missed:,} signals  ", style="bold white on red")
        other_misses = m.stats.program_misses - m.stats.signals_missed
        if other_misses:
            text.append(f"missed {other_misses:,} probe runs  ", style="bold red")
        # Map pressure: past 75% the kernel's flow map is near full; once full,
        # new flows are counted (exactly) in the overflow rows, by signal only.
        if m.stats.flows_full:
            text.append(f"FLOW MAP FULL: {m.stats.flows_full:,} in overflow rows  ", style="bold white on red")
        elif m.map_fill.get("flows", 0) >= MAP_PRESSURE:
            text.append(f"flow map {m.map_fill['flows']:.0%}  ", style="bold red")
        # The threads and signalfd maps have no overflow row: what did not fit went uncounted.
        for name, full in (("THREAD", m.stats.threads_full), ("SIGNALFD", m.stats.signalfds_full)):
            if full:
                text.append(f"{name} MAP FULL: {full:,} not counted  ", style="bold white on red")
        # Queued signals whose end could not be followed (no room): their rows' fates are short by this.
        unfollowed = m.stats.pending_full + m.stats.exits_full
        if unfollowed:
            text.append(f"FATES NOT FOLLOWED: {unfollowed:,}  ", style="bold white on red")
        lost = m.stats.events_lost + m.stats.events_dropped
        text.append(f"lost {lost:,} details", style="bold red" if lost else "")
        text.append(f"  filter {self.flow_filter.describe() or '-'}  ")
        state = "PAUSED" if self.paused else ("LIVE" if self.source.live else "REPLAY")
        if m.finished and not self.source.live:
            state = "REPLAY END"
        text.append(state, style="bold yellow" if self.paused else "bold green")
        text.append(f"  every {self.refresh_s:g}s")
        if self.source.name:
            text.append(f"  {printable(self.source.name)}")
        self._main.query_one("#header", Static).update(text)

    def render_table(self, name: str) -> None:
        table = self.table(name)
        rows = sorted_rows(
            table.spec, self.model, self.flow_filter, table.sort_column, table.descending, MAX_TABLE_ROWS
        )
        table.show(rows, self.model.last_ts)

    # ---- actions -----------------------------------------------------------

    def action_show_table(self, name: str) -> None:
        """Show the flows, signalfd, sigreturn or deaths table."""
        self._main.query_one("#tabs", TabbedContent).active = name

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        self.active = event.pane.id or "flows"
        self.render_table(self.active)
        self.table(self.active).focus()

    def action_sort_column(self, step: int) -> None:
        """Sort by the column left or right of the current one."""
        self.table(self.active).step_sort(step)
        self.render_table(self.active)

    def action_invert_sort(self) -> None:
        """Invert the sort order."""
        table = self.table(self.active)
        table.set_sort(table.sort_column, not table.descending)
        self.render_table(self.active)

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        table = self.table(self.active)
        clicked = table.column_index(event.column_key)
        table.set_sort(clicked, not table.descending if clicked == table.sort_column else True)
        self.render_table(self.active)

    def action_pause(self) -> None:
        """Freeze the view (counting goes on)."""
        self.paused = not self.paused
        self.refresh_view()

    def action_clear(self) -> None:
        """Forget all counts so far."""
        self.model.clear()
        self.refresh_view()
        self.render_table(self.active)

    def action_alerts(self) -> None:
        """Show the alerts: SROP, forged siginfo, probing."""
        self.push_screen(AlertsScreen(self.model))

    def action_help(self) -> None:
        """Show the keys."""
        seen = [
            (" ".join(self.get_key_display(Binding(key, "")) for key in binding.key.split(",")), binding.description)
            for binding in self.BINDINGS
            if isinstance(binding, Binding) and binding.show
        ]
        seen += [("enter", "Details of the row"), ("esc", "Back / clear filter"), ("click header", "Sort")]
        self.push_screen(HelpScreen(seen))

    def action_filter(self) -> None:
        """Filter by pid, comm or signal."""
        bar = self._main.query_one("#filter-bar")
        bar.add_class("visible")
        box = self._main.query_one("#filter", Input)
        box.value = self.flow_filter.describe()
        box.focus()

    def action_clear_filter(self) -> None:
        """Clear the filter."""
        self._close_filter()
        self.flow_filter = FlowFilter()
        self.refresh_view()

    def _close_filter(self) -> None:
        self._main.query_one("#filter-bar").remove_class("visible")
        self._main.query_one("#filter-error", Static).update("")
        self.table(self.active).focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        try:
            self.flow_filter = FlowFilter.parse(event.value)
        except FilterError as exc:
            self._main.query_one("#filter-error", Static).update(Text(f"invalid filter: {exc}"))
            return
        self._close_filter()
        self.refresh_view()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if not isinstance(event.data_table, SignalTable):
            return
        row = event.data_table.shown.get(event.row_key.value)
        if row is not None:
            self.push_screen(detail_screen(self.model, event.data_table.spec.name, row))
