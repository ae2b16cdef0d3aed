"""The header line, drawn from the app's state: a widget whose reactive attributes are bound to
the app's (Textual's data binding), so that whatever changes one of them (a snapshot, pause, a
setting, a fitted table) redraws it, and nothing draws it by hand.

`header_text` is the line itself, a pure function of that state: most important first, so that
a narrow terminal cuts only the rest (the state, alerts and every loss, what is traced and shown,
then the rates).
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from sigtop.contract import Source
from sigtop.names import LIGHT_UNSEEN_SHORT, printable
from sigtop.ui.feed import Snapshot, Totals, ViewSettings

MAP_PRESSURE = 0.75  # the flow map this full: said before it overflows
STATE_WORDS = {"live": "LIVE", "replay": "REPLAY", "replay end": "REPLAY END", "failed": "FAILED"}


class SignalHeader(Static):
    """The header. Bound to the app's reactives of the same names (SigtopApp.compose)."""

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)  # the one shown
    held: reactive[Snapshot | None] = reactive(None, always_update=True)  # newer, held while paused
    paused: reactive[bool] = reactive(False)
    source_phase: reactive[str | None] = reactive(None)  # what attach is doing, until the first snapshot
    settings: reactive[ViewSettings | None] = reactive(None)
    hidden_columns: reactive[int] = reactive(0)  # of the table shown: did not fit
    wide: reactive[bool] = reactive(False)

    def __init__(
        self, source: Source, refresh_s: float, replay_place: Callable[[], str] | None, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.source = source
        self.refresh_s = refresh_s
        self.replay_place = replay_place  # where a seekable replay is (None: not one)

    def render(self) -> Text:
        return header_text(
            latest=self.held or self.snapshot,
            paused=self.paused,
            phase=self.source_phase,
            settings=self.settings,
            hidden_columns=self.hidden_columns,
            wide=self.wide,
            source=self.source,
            refresh_s=self.refresh_s,
            place=self.replay_place() if self.replay_place is not None and self.paused else None,
        )


def header_text(
    *,
    latest: Snapshot | None,
    paused: bool,
    phase: str | None,
    settings: ViewSettings | None,
    hidden_columns: int,
    wide: bool,
    source: Source,
    refresh_s: float,
    place: str | None,
) -> Text:
    text = Text()
    text.append("sigtop ", style="bold")
    if paused:
        text.append("PAUSED", style="bold yellow")
        if place is not None:
            text.append(f" at {place} ([ ] t)", style="yellow")
    elif latest is None:
        text.append(phase or ("ATTACHING" if source.live else "LOADING"), style="bold yellow")
    else:
        style = "bold green" if latest.state in STATE_WORDS and latest.state != "failed" else "bold yellow"
        word = STATE_WORDS.get(latest.state, latest.state.upper())
        if latest.state == "attaching" and phase:
            word = f"ATTACHING: {phase}"
        text.append(word, style=style)
    text.append("  ")
    if latest is not None:
        alarms(text, latest.totals)
    if source.scope:  # the kernel's filter (--pid, -s): fixed for the run, Esc does not clear it
        text.append(f"traced {source.scope}  ", style="bold")
    if latest is not None and latest.totals.light:
        text.append(f"light: unseen {LIGHT_UNSEEN_SHORT}  ", style="bold yellow")
    if settings is not None:
        if settings.group:
            text.append(f"grouped by {settings.group} (g)  ", style="bold magenta")
        if settings.tree:
            text.append("tree (T)  ", style="bold magenta")
        view_filter = settings.flt.describe()
        text.append(f"filter {view_filter or '-'}  ", style="bold cyan" if view_filter else "")
    if latest is not None:
        t = latest.totals
        text.append(f"{t.signals_per_sec:,.0f} sig/s  total {t.total_signals:,}  flows {t.flows:,}  ")
        if t.stats.events_lost:  # the kernel's ring buffer was full: details sigtop never had
            text.append(f"lost {t.stats.events_lost:,} details  ", style="bold red")
        if t.stats.events_dropped:  # sigtop's own decode budget: a choice, and the counts are whole
            seen = t.events_kept + t.stats.events_dropped
            text.append(f"details sampled 1 in {round(seen / max(1, t.events_kept)):,}  ", style="yellow")
    text.append(f"every {refresh_s:g}s")
    if source.name:
        text.append(f"  {printable(source.name)}")
    if hidden_columns > 0:
        text.append(f"  +{hidden_columns} columns when wider (w: scroll ←/→; Enter: all of a row)", style="dim")
    elif wide:
        text.append("  wide: ←/→ scroll (w)", style="dim")
    return text


def alarms(text: Text, t: Totals) -> None:
    """Alerts, and every loss, kernel or user space: counts are exact unless these say otherwise."""
    stats = t.stats
    if t.alerts:
        text.append(f"ALERTS {t.alerts} (a)  ", style="bold white on red")
    if stats.signals_uncounted:
        text.append(f"UNCOUNTED {stats.signals_uncounted:,} signals  ", style="bold white on red")
    other_misses = stats.program_misses - stats.signals_missed
    if other_misses:
        text.append(f"missed {other_misses:,} probe runs  ", style="bold red")
    # Map pressure: past 75% the kernel's flow map is near full; once full,
    # new flows are counted (exactly) in the overflow rows, by signal only.
    if stats.flows_full:
        text.append(f"FLOW MAP FULL: {stats.flows_full:,} in overflow rows  ", style="bold white on red")
    elif t.map_fill.get("flows", 0) >= MAP_PRESSURE:
        text.append(f"flow map {t.map_fill['flows']:.0%}  ", style="bold red")
    # The threads and signalfd maps have no overflow row: what did not fit went uncounted.
    for name, full in (("THREAD", stats.threads_full), ("SIGNALFD", stats.signalfds_full)):
        if full:
            text.append(f"{name} MAP FULL: {full:,} not counted  ", style="bold white on red")
    # Queued signals whose end could not be followed (no room): their rows' fates are short by this.
    unfollowed = stats.pending_full + stats.exits_full
    if unfollowed:
        text.append(f"FATES NOT FOLLOWED: {unfollowed:,}  ", style="bold white on red")
    if stats.filter_full:
        text.append(f"FILTER FULL: {stats.filter_full:,} not followed  ", style="bold white on red")
    if t.evicted_rows:
        # Rows given up to the cap (the users holding most first): their counts are kept.
        text.append(f"evicted {t.evicted_rows:,} rows: {t.evicted_top}  ", style="bold yellow")
