"""The live view: a top-like Textual app over any `Source` (live BPF or a recording).

The source is passed in, never created here, and the app knows it only
through the protocol in sigtop.sources. Batches go straight to the model's
own thread (sigtop.ui.feed), which folds them and posts one immutable
`Snapshot` per refresh tick; the app only draws snapshots (`snapshot` is a
reactive attribute: what is shown follows from it) and turns keys into view
settings, which the feed answers with a fresh snapshot at once.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import termios
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from sigtop.config import ViewConfig
from sigtop.contract import Source, SourceError
from sigtop.filters import FilterError, FlowFilter
from sigtop.model import SignalModel
from sigtop.names import LIGHT_UNSEEN_SHORT
from sigtop.tables import TABLES
from sigtop.tables.base import Detail
from sigtop.timefmt import clock_s, seek_target
from sigtop.ui.commands import commands
from sigtop.ui.feed import ModelFeed, Snapshot, ViewSettings
from sigtop.ui.header import SignalHeader
from sigtop.ui.screens import DetailScreen, FailureScreen, HelpScreen, SeekScreen
from sigtop.ui.table import SignalTable

TERMINAL_CHECK_S = 0.5
# Textual's shutdown writes to the terminal through a bounded queue; with the terminal gone
# its writer thread is gone too, and the shutdown waits forever (SIGTERM and SIGHUP then
# never run: their handlers need the loop). Once an exit is asked for, a watchdog ends the
# process this long after if it is still here and its terminal is gone (the kernel releases
# every probe and map at exit); with the terminal still there, it waits longer for Textual
# to give it back.
EXIT_GRACE_S = 0.3  # with the terminal gone there is nothing left to restore
EXIT_GRACE_WITH_TERMINAL_S = 10.0
FAILURE_SHOWN_S = 60.0  # an attach failure stays on screen this long at most (nobody may be watching)
MAX_FEED_BACKLOG = 2  # batches a streamed replay may have waiting for the model's thread


class SnapshotReady(Message):
    """A new snapshot from the feed; a newer one replaces it while it waits."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


class DetailReady(Message):
    def __init__(self, detail: Detail | None) -> None:
        super().__init__()
        self.detail = detail


class SigtopApp(App[int]):
    """sigtop's main screen."""

    TITLE = "sigtop"
    CSS = """
    #header { height: 1; background: $boost; padding: 0 1; }
    #filter-bar { dock: bottom; height: auto; display: none; }
    #filter-bar.visible { display: block; }
    #filter-error { color: $error; padding: 0 1; height: auto; }
    DataTable { height: 1fr; }
    .empty { padding: 1 2; color: $text-muted; height: auto; }
    .proc { padding: 1 0 0 0; }
    #help { width: 94; max-width: 100%; height: auto; max-height: 100%; border: round $accent; padding: 0 1;
            background: $panel; }
    HelpScreen { align: center middle; }
    FailureScreen { align: center middle; }
    #failure { width: 80; max-width: 100%; height: auto; border: round $error; padding: 1 2; background: $panel; }
    SeekScreen { align: center middle; }
    #seek { width: 70; max-width: 100%; height: auto; border: round $accent; padding: 0 1; background: $panel; }
    """
    BINDINGS = [
        # A tooltip, where there is one, is what the help screen says of the key.
        Binding("q,f10", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark,f1", "help", "Help", tooltip="This help"),
        Binding("slash,f4", "filter", "Filter", tooltip="Filter the view (see below)"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        # The tabs show the tables' keys' effect; the footer keeps to what fits 80 columns.
        *(
            Binding(key, f"show_table('{name}')", spec.title, show=False, tooltip=f"The {spec.title} table")
            for name, spec in TABLES.items()
            for key in (spec.key, *spec.other_keys)
        ),
        Binding("less_than_sign", "sort_column(-1)", "Sort", tooltip="Sort by the column to the left"),
        Binding("greater_than_sign", "sort_column(1)", "Sort >", show=False, tooltip="Sort by the column to the right"),
        Binding("I", "invert_sort", "Invert", show=False, tooltip="Invert the sort order"),
        Binding(
            "w",
            "wide",
            "Wide",
            tooltip="Wide: every column at full width, the table scrolled sideways with ←/→ (w again: fitted)",
        ),
        Binding("space,p", "pause", "Pause", tooltip="Pause the view (counting goes on; a replay waits where it is)"),
        Binding("c", "clear", "Clear", tooltip="Clear: forget every count so far"),
        # A replay's transport (dolphie's keys): the replay pauses with the view, and steps and seeks.
        Binding(
            "left_square_bracket", "replay_step(-1)", "Back", show=False, tooltip="Replay: one interval back (paused)"
        ),
        Binding(
            "right_square_bracket", "replay_step(1)", "Step", show=False, tooltip="Replay: one interval on (paused)"
        ),
        Binding("t", "replay_seek", "Seek", show=False, tooltip="Replay: go to a time (HH:MM:SS, or +/-N seconds)"),
        Binding(
            "f",
            "fold",
            "Fold",
            show=False,
            tooltip="Fold or unfold one-off senders (each child's SIGCHLD) into one row per name",
        ),
        Binding(
            "T,f5",
            "tree",
            "Tree",
            show=False,
            tooltip="Tree: each sender's flows under its parent's, as htop's F5 (grouping off meanwhile)",
        ),
        Binding(
            "g",
            "group",
            "Group",
            show=False,
            tooltip="Group the flows by sender name, then by target, then by signal, then not",
        ),
    ]

    # What is drawn follows from these: the tables from `snapshot` (watch_snapshot), the header
    # from all of them (bound to SignalHeader's own, in compose).
    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True, init=False)
    held: reactive[Snapshot | None] = reactive(None, always_update=True, init=False)  # newer, while paused
    paused: reactive[bool] = reactive(False, init=False)
    source_phase: reactive[str | None] = reactive(None, init=False)  # what attach is doing
    settings: reactive[ViewSettings] = reactive(ViewSettings, init=False)
    hidden_columns: reactive[int] = reactive(0, init=False)  # of the table shown: did not fit
    wide: reactive[bool] = reactive(False, init=False)  # every column at full width, scrolled sideways (w)

    def __init__(
        self,
        source: Source,
        flow_filter: FlowFilter | None = None,
        refresh_s: float = 1.0,
        watch_exit: bool = False,
        config: ViewConfig | None = None,
        config_file: Path | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.model = SignalModel()
        self.refresh_s = refresh_s
        # The settings file's (sigtop.config), where the command line says nothing else.
        self.config = config or ViewConfig()
        self.config_file = config_file  # where "Save these settings" writes (None: the user's file)
        if self.config.theme:
            self.theme = self.config.theme
        settings = ViewSettings(
            table=self.config.table,
            sorts=tuple((t, c, d) for t, (c, d) in self.config.sort.items()),
            flt=flow_filter if flow_filter else self.config.flow_filter(),
            fold=self.config.fold,
            group=self.config.group,
            tree=self.config.tree and not self.config.group,  # the two are one or the other
        )
        self.set_reactive(SigtopApp.settings, settings)
        self.feed = ModelFeed(self.model, self._publish, tick_s=refresh_s, settings=self.settings, live=source.live)
        self._show_moved = False  # a replay step or seek: its next snapshot is shown, paused or not
        self._filter_before = self.settings.flt  # the filter when the filter box opened
        self.failure: str | None = None  # why the app ended itself, for the CLI to print
        self._terminal: int | None = None
        # Only the CLI's app on a real terminal arms the exit watchdog (never a test's).
        self._watch_exit_armed = watch_exit
        self._watchdog: threading.Thread | None = None

    @property
    def active(self) -> str:
        return self.settings.table

    @property
    def flow_filter(self) -> FlowFilter:
        return self.settings.flt

    @property
    def sort(self) -> dict[str, tuple[str, bool]]:
        """Each table's sort: (column name, descending)."""
        return {name: self.settings.sort(name) for name in TABLES}

    # ---- layout ------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield SignalHeader(
            self.source, self.refresh_s, self._replay_place if self.seekable else None, id="header"
        ).data_bind(
            SigtopApp.snapshot,
            SigtopApp.held,
            SigtopApp.paused,
            SigtopApp.source_phase,
            SigtopApp.settings,
            SigtopApp.hidden_columns,
            SigtopApp.wide,
        )
        with TabbedContent(initial=self.settings.table, id="tabs"):
            for name, spec in TABLES.items():
                with TabPane(f"{spec.key} {spec.title}", id=name):  # the key that shows it
                    yield Static(spec.empty, id=f"empty-{name}", classes="empty")
                    yield SignalTable(spec, id=f"table-{name}", hidden=self.config.hide.get(name, ()))
        with Static(id="filter-bar"):
            yield Input(
                placeholder="pid:1234 comm:nginx sig:TERM ctr:docker is:failed   (Enter keeps, Esc goes back)",
                id="filter",
            )
            yield Static(id="filter-error")
        yield Footer()

    def on_mount(self) -> None:
        # The main screen's widgets, also while a detail screen is on top.
        self._main = self.screen
        loop = self._loop = asyncio.get_running_loop()
        # SIGHUP with the terminal still there (a closed ssh session's
        # shell, `kill -HUP`): end like SIGTERM, restoring the terminal.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(signum, self.exit)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): nothing to hook
        self._terminal = self._terminal_fd()
        self.feed.start()
        self.run_worker(self._attach_and_start, thread=True, name="attach", exit_on_error=False)
        if self._terminal is not None:
            self.set_interval(TERMINAL_CHECK_S, self._check_terminal)
        self.table(self.settings.table).focus()
        # Everything built so far (modules, the widget tree) lives as long as
        # the app: out of the collector's sight, a full collection in a storm
        # walks only what the storm made (tens of ms instead of ~100).
        gc.freeze()

    def _attach_and_start(self) -> None:
        """Attach (a live source compiles here, while the first screen is already up), then start."""
        loop = self._loop
        if hasattr(self.source, "room"):  # a streamed recording: never more than a few batches ahead
            self.source.room = lambda: self.feed.backlog() < MAX_FEED_BACKLOG
        if self.seekable:  # a replay's transport: a move back folds it again from its start
            self.source.seekable = True
            self.source.on_reset = self.feed.reset
            self.source.on_moved = self._replay_moved
        if hasattr(self.source, "on_phase"):  # a live source says each step of its ~1 s attach
            self.source.on_phase = lambda step: self.call_from_thread(self._phase, step)
        try:
            self.source.attach()
        except SourceError as exc:
            self.call_from_thread(self._failed_to_start, str(exc))  # first: the failed snapshot must not end it
            self.feed.fail(str(exc))
            return
        if self.source.live:
            self.feed.set_state("live")
        loop.call_soon_threadsafe(self.source.start, loop, self.feed.put)

    def _phase(self, step: str) -> None:
        self.source_phase = step.upper()

    def on_unmount(self) -> None:
        self.feed.stop()
        self.source.stop()

    def exit(self, *args, **kwargs) -> None:  # type: ignore[override]
        """Exit as Textual does, with the watchdog armed (see EXIT_GRACE_S)."""
        if self._watch_exit_armed and self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch_exit, name="sigtop-exit-watchdog", daemon=True)
            self._watchdog.start()
        super().exit(*args, **kwargs)

    def _watch_exit(self) -> None:
        """Until the process is gone (a daemon thread: it ends with the interpreter), also past
        run(): Textual's input thread, not a daemon, can keep the interpreter's exit waiting
        on a dead terminal."""
        time.sleep(EXIT_GRACE_S)
        waited = EXIT_GRACE_S
        while waited < EXIT_GRACE_WITH_TERMINAL_S and self._terminal_alive():
            time.sleep(0.1)
            waited += 0.1
        self.source.abandon()
        os._exit(self.return_code if self.return_code is not None else 1)

    def _terminal_alive(self) -> bool:
        if self._terminal is None:
            self._terminal = self._terminal_fd()
        try:
            termios.tcgetattr(self._terminal)
        except (termios.error, OSError, TypeError):
            return False
        return True

    def table(self, name: str) -> SignalTable:
        return self._main.query_one(f"#table-{name}", SignalTable)

    # ---- snapshots -----------------------------------------------------------

    def _publish(self, snapshot: Snapshot) -> None:
        """On the feed's thread: hand the snapshot to the UI loop (post_message is thread-safe)."""
        self.post_message(SnapshotReady(snapshot))

    @on(SnapshotReady)
    def _snapshot_ready(self, message: SnapshotReady) -> None:
        if self.paused and message.snapshot.settings == self.settings and not self._show_moved:
            self.held = message.snapshot  # counting goes on: the header says how far
            return
        self._show_moved = False
        self.held = None
        self.snapshot = message.snapshot

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        try:
            view = snapshot.table
            table = self.table(view.name)
            table.set_sort(view.sort, view.descending)
            table.show(view.keys, view.cells)
            empty = self._main.query_one(f"#empty-{view.name}", Static)
            empty.display = not view.keys
            if view.unavailable is not None:
                empty.update(Text(f"Not available: {view.unavailable}.", style="yellow"))
            elif view.total and not view.keys:
                empty.update(f"No rows match the filter ({view.total:,} in the table): Esc clears it.")
            elif snapshot.totals.light and view.name == "flows":  # probes and refusals are not seen
                empty.update(
                    "No signals yet: every signal sent or raised by the kernel shows here as it happens "
                    f"(--light: {LIGHT_UNSEEN_SHORT} are not seen)."
                )
            else:
                empty.update(TABLES[view.name].empty)
        except NoMatches:  # a snapshot arriving while the app shuts down
            return
        if self.failure is not None:
            return  # ending already (an attach failure's screen is up)
        if snapshot.error is not None or (snapshot.totals.finished and self.source.error):
            # The source is dead: a frozen view saying LIVE would be a lie.
            self.end(snapshot.error or self.source.error or "the source failed")

    @on(SignalTable.ColumnsFitted)
    def _columns_fitted(self, message: SignalTable.ColumnsFitted) -> None:
        if message.table.spec.name == self.active:
            self.hidden_columns = message.table.columns_cut_off

    @property
    def seekable(self) -> bool:
        """A replay that pauses, steps and seeks ([, ], t): not a live source, whose time only goes on."""
        return not self.source.live and hasattr(self.source, "seek")

    def _replay_moved(self) -> None:
        """The replay delivered a step or a seek (on the app's loop): show where it is now."""
        self._show_moved = True
        self.feed.view(self.settings)  # published once the feed has folded what came before

    def action_replay_step(self, n: int) -> None:
        if not self.seekable:
            self.notify("a live view only goes on: [ and ] step a replay", timeout=3)
            return
        self.paused = True
        self.source.step(n)

    def action_replay_seek(self, error: str = "") -> None:
        if not self.seekable:
            self.notify("a live view only goes on: t seeks a replay", timeout=3)
            return
        self.paused = True

        def go(text: str | None) -> None:
            if not text:
                return
            try:
                target = seek_target(text, self.source.at_ts or time.time())
            except ValueError as exc:
                self.action_replay_seek(str(exc))  # asked again, saying why
                return
            self.source.seek(target)

        self.push_screen(SeekScreen(self._replay_place(), error), go)

    def _replay_place(self) -> str:
        """Where a replay is: its recorded time and batch (of how many, once known)."""
        src = self.source
        total = f"/{src.total}" if src.total else ""
        when = clock_s(src.at_ts) if src.at_ts else "the start"
        return f"{when}, interval {src.position}{total}"

    def watch_paused(self, paused: bool) -> None:
        if self.seekable:
            self.source.pause(paused)
        if not paused and self.held is not None:
            held, self.held = self.held, None
            self.snapshot = held

    async def settled(self, timeout_s: float = 10.0) -> None:
        """Wait until the feed has folded and published all it was given, and the UI drew it (tests)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            seq = self.feed.seq
            if self.feed.idle.is_set() and self._drawn(seq):
                await asyncio.sleep(0)
                if self.feed.idle.is_set() and self.feed.seq == seq and self._drawn(seq):
                    return
            await asyncio.sleep(0.01)
        raise TimeoutError(f"the model's thread did not settle within {timeout_s} s")

    def _drawn(self, seq: int) -> bool:
        shown = self.held if self.paused and self.held is not None else self.snapshot
        return seq == 0 or (shown is not None and shown.seq >= seq)

    def _failed_to_start(self, failure: str) -> None:
        """Attach failed: say why on screen, with the fix, until a key (or a minute) ends it."""
        self.failure = failure
        self.push_screen(FailureScreen(failure))
        self.set_timer(FAILURE_SHOWN_S, lambda: self.exit(return_code=1))

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
        if not self._terminal_alive():
            self.end("the terminal went away")

    def _show(self, settings: ViewSettings) -> None:
        """Ask the feed for a view (it answers with a snapshot at once)."""
        self.settings = settings
        self.feed.view(settings)

    # ---- actions -----------------------------------------------------------

    def action_show_table(self, name: str) -> None:
        """Show the flows, signalfd, sigreturn, deaths or alerts table (from a drill-down too: it closes)."""
        while len(self.screen_stack) > 1 and self.screen is not self._main:
            self.pop_screen()
        self._main.query_one("#tabs", TabbedContent).active = name

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        name = event.pane.id or "flows"
        if name != self.settings.table:
            self._show(self.settings.showing(name))
        self.hidden_columns = self.table(name).columns_cut_off
        self.table(name).focus()

    def action_sort_column(self, step: int) -> None:
        """Sort by the column left or right of the current one."""
        table = self.table(self.active)
        _column, descending = self.settings.sort(self.active)
        column = table.next_sort(step)
        table.set_sort(column, descending)
        self._show(self.settings.sorted_by(self.active, column, descending))

    def sort_by(self, column: str) -> None:
        """Sort the table shown by this column, largest first (the palette's Sort by ...)."""
        self.table(self.active).set_sort(column, True)
        self._show(self.settings.sorted_by(self.active, column, True))

    def apply_filter(self, text: str) -> None:
        """Filter the view by this text, as typed in the filter box (the palette's presets)."""
        self._show(self.settings.filtered(FlowFilter.parse(text)))

    def cursor_container(self) -> str:
        """The container of the flows row under the cursor (the target's, else the sender's), or ""."""
        shown = self.snapshot.table if self.snapshot is not None else None
        if shown is None or not shown.containers:
            return ""
        key = self.table(shown.name).cursor_key()
        return shown.containers[shown.keys.index(key)] if key in shown.keys else ""

    def save_view_svg(self) -> None:
        """The screen as an SVG in the current directory."""
        try:
            path = self.save_screenshot(path=os.getcwd())
        except OSError as exc:
            self.notify(f"could not save the screenshot: {exc.strerror or exc}", severity="error")
            return
        self.notify(f"saved {path}")

    def save_view_json(self) -> None:
        """What the filter shows, as sigtop batch --json writes it, in the current directory (built on
        the model's thread, written there too: a full disk says so, never stalls the keys)."""
        path = os.path.join(os.getcwd(), time.strftime("sigtop-view-%Y%m%d-%H%M%S.json"))
        flt = self.flow_filter

        def write(model: SignalModel) -> str:
            from sigtop.export.report import to_json

            try:
                with open(path, "x", encoding="utf-8") as out:
                    json.dump(to_json(model, flt), out, indent=1)
            except OSError as exc:
                return f"could not save {path}: {exc.strerror or exc}"
            return f"saved {path}"

        self.feed.run(write, lambda said: self.call_from_thread(self.notify, said))

    def save_settings(self) -> None:
        """The view's settings now (theme, table, sorts, folding, filter; the file's hidden columns,
        interval and presets kept) to the settings file: --config's, else the user's."""
        from sigtop import config as settings_file

        kept = self.config
        now = settings_file.ViewConfig(
            theme=self.theme,
            table=self.active,
            sort={t: (c, d) for t, c, d in self.settings.sorts},
            fold=self.settings.fold,
            group=self.settings.group,
            tree=self.settings.tree,
            hide=kept.hide,
            interval=kept.interval,
            filter=self.flow_filter.describe(),
            presets=kept.presets,
        )
        path = self.config_file or settings_file.user_file()
        try:
            settings_file.save(now, path)
        except OSError as exc:
            self.notify(f"could not save {path}: {exc.strerror or exc}", severity="error")
            return
        self.config = now
        self.notify(f"saved to {path}")

    def action_invert_sort(self) -> None:
        """Invert the sort order."""
        column, descending = self.settings.sort(self.active)
        self.table(self.active).set_sort(column, not descending)
        self._show(self.settings.sorted_by(self.active, column, not descending))

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        table = self.table(self.active)
        clicked = table.column_name(event.column_key)
        column, descending = self.settings.sort(self.active)
        descending = not descending if clicked == column else True
        table.set_sort(clicked, descending)
        self._show(self.settings.sorted_by(self.active, clicked, descending))

    def action_pause(self) -> None:
        """Freeze the view (counting goes on; a replay waits where it is)."""
        self.paused = not self.paused

    def action_fold(self) -> None:
        """Fold one-off senders into one row per name, or show them one row each."""
        self._show(self.settings.folding(not self.settings.fold))
        self.notify("one-off senders folded by name" if self.settings.fold else "every sender its own row", timeout=2)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own (keys, theme, quit, ...), then sigtop's (sigtop.ui.commands)."""
        yield from super().get_system_commands(screen)
        yield from commands(self)

    def action_group(self) -> None:
        """Sum the flows by sender name, then by target, then by signal, then show them all again."""
        order = ("", *TABLES["flows"].groupings)
        self.group_by(order[(order.index(self.settings.group) + 1) % len(order)])

    def action_wide(self) -> None:
        """Every column at full width, scrolled sideways (←/→); or fitted to the terminal again."""
        self.wide = not self.wide
        for name in TABLES:
            try:
                self.table(name).set_wide(self.wide)
            except NoMatches:
                continue

    def action_tree(self) -> None:
        """Flows under their sender's ancestors (htop's F5), or as a list again."""
        self._show(self.settings.treed(not self.settings.tree))
        self.notify("flows as a tree of senders" if self.settings.tree else "flows as a list", timeout=2)

    def group_by(self, group: str) -> None:
        self._show(self.settings.grouped(group))
        self.notify(f"flows grouped by {group}" if group else "flows not grouped", timeout=2)

    def action_clear(self) -> None:
        """Forget all counts so far."""
        self.feed.clear()

    def action_help(self) -> None:
        """Show the keys."""
        every = [
            (
                " ".join(self.get_key_display(Binding(key, "")) for key in binding.key.split(",")),
                binding.tooltip or binding.description,
            )
            for binding in self.BINDINGS
            if isinstance(binding, Binding) and binding.key != "ctrl+c" and binding.action != "clear_filter"
        ]
        every += [
            ("enter", "Details of the row (every field, also of hidden columns)"),
            ("esc", "Close a screen, or the filter box (back to its filter); else clear the filter"),
            ("up down pgup pgdn", "Move in the table; home, end: first, last row"),
            ("click header", "Sort by that column (again: invert)"),
            ("ctrl+p", "Command palette: every command here, by name"),
        ]
        self.push_screen(HelpScreen(every))

    def action_filter(self) -> None:
        """Filter by pid, comm, signal or container."""
        bar = self._main.query_one("#filter-bar")
        bar.add_class("visible")
        box = self._main.query_one("#filter", Input)
        self._filter_before = self.flow_filter  # what Esc goes back to
        box.value = self.flow_filter.describe()
        box.focus()

    def action_clear_filter(self) -> None:
        """Esc: in the filter box, close it and go back to the filter it opened with; else clear
        the view's filter (the kernel's, from --pid/-s, stays: the header's "traced")."""
        bar_open = self._main.query_one("#filter-bar").has_class("visible")
        self._close_filter()
        self._show(self.settings.filtered(self._filter_before if bar_open else FlowFilter()))

    @on(Input.Changed, "#filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        """Filter as you type; what does not parse says why, inline, and the last good filter stays."""
        error = self._main.query_one("#filter-error", Static)
        try:
            flt = FlowFilter.parse(event.value)
        except FilterError as exc:
            error.update(Text(f"invalid filter: {exc} (last good one kept)"))
            return
        error.update("")
        if flt != self.flow_filter:
            self._show(self.settings.filtered(flt))

    def _close_filter(self) -> None:
        self._main.query_one("#filter-bar").remove_class("visible")
        self._main.query_one("#filter-error", Static).update("")
        self.table(self.active).focus()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        try:
            flt = FlowFilter.parse(event.value)
        except FilterError as exc:
            self._main.query_one("#filter-error", Static).update(Text(f"invalid filter: {exc}"))
            return
        self._close_filter()
        self._show(self.settings.filtered(flt))

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if not isinstance(event.data_table, SignalTable) or event.row_key.value is None:
            return
        self.feed.detail(event.data_table.spec.name, event.row_key.value, lambda d: self.post_message(DetailReady(d)))

    @on(DetailReady)
    def _detail_ready(self, message: DetailReady) -> None:
        if message.detail is not None:
            self.push_screen(DetailScreen(message.detail))
