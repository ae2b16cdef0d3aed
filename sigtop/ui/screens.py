"""The drill-down and help screens. A drill-down shows a `Detail` (sigtop.tables.base) that the
model's thread built for the row; the screens never read the model.

Strings a process or a recording chose arrive sanitised by the model
(names.printable) and are only ever appended to rich Text, never parsed as markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Sparkline, Static

from sigtop.tables import TABLES
from sigtop.tables.base import Detail


class DetailScreen(Screen[None]):
    """A row's drill-down: its sections, a sparkline where it has one, then its tables. Esc goes back."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
        Binding("q,f10", "app.quit", "Quit"),
    ]

    def __init__(self, detail: Detail) -> None:
        super().__init__()
        self.detail = detail

    def compose(self) -> ComposeResult:
        d = self.detail
        with VerticalScroll():
            for i, section in enumerate(d.sections):
                yield Static(section, classes="proc" if i else "", id="head" if i == 0 else None)
            if d.sparkline is not None:
                yield Static(d.sparkline_caption)
                yield Sparkline(list(d.sparkline), id="rate")
            for i, table in enumerate(d.tables):
                yield Static(Text(table.title, style="bold"), classes="proc")
                yield DataTable(id=f"detail-table-{i}", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        for i, spec in enumerate(self.detail.tables):
            table = self.query_one(f"#detail-table-{i}", DataTable)
            table.add_columns(*spec.columns)
            for row in spec.rows:
                table.add_row(*row)
            if not spec.rows:
                table.add_row(spec.empty, *[""] * (len(spec.columns) - 1))
        if self.detail.tables:
            # Focused for its keys, but opened at the top: the title and the story come first.
            self.query_one("#detail-table-0", DataTable).focus(scroll_visible=False)


# One paragraph per string: the help box wraps them to the terminal's width.
FILTER_HELP = "\n".join(
    (
        (
            "Filter (/ or F4): pid:1234  comm:nginx  sig:TERM  ctr:docker  (bare words: 1234, TERM, nginx), and "
            "for flows is:failed  is:fatal  is:noeffect (did not all take effect). Terms of one kind match any; "
            "kinds combine with AND. It filters as you type; Enter keeps it, Esc goes back to the one before. "
            "ctrl+p has presets."
        ),
        *(spec.help for spec in TABLES.values() if spec.help),
        (
            "Columns that do not fit are hidden, lowest priority first (the header says how many); names and "
            "reasons are shortened first; Enter shows every field of a row."
        ),
    )
)

HEADER_HELP = "\n".join(
    (
        ("The header, most important first:"),
        (
            "LIVE / REPLAY / PAUSED (space: the view is frozen, counting goes on); ATTACHING: what the start is "
            "doing. ALERTS n (a): alerts raised (the Alerts table)."
        ),
        (
            "In red, what sigtop could not count or follow (never silent): UNCOUNTED n signals: in no count (the "
            "kernel skipped sigtop's signal_generate, or a signal was taken that sigtop never saw sent); missed n"
            " probe runs: its other programs skipped; FLOW MAP FULL / flow map n%: new flows counted by signal "
            "only (overflow rows); THREAD / SIGNALFD MAP FULL; FATES NOT FOLLOWED; FILTER FULL; evicted n rows "
            "(their counts kept, by user); lost n details (drill-down events the kernel's ring buffer had no room for; "
            "the counts stay exact). In yellow, details sampled 1 in n: past 120,000 events/s the live view decodes "
            "the newest of each interval's detail events and skips the rest, on purpose; every count stays exact."
        ),
        (
            "traced ...: the kernel's filter (--pid, -s), fixed for the run. filter ...: the view's. Then signals"
            " per second, total, flows, and the refresh interval."
        ),
    )
)


class FailureScreen(ModalScreen[None]):
    """Why the view could not start (attach failed), and how to fix it; any key ends sigtop
    (status 1, the line also on stderr once the terminal is back)."""

    def __init__(self, failure: str) -> None:
        super().__init__()
        self.why = failure

    def compose(self) -> ComposeResult:
        text = Text("sigtop could not start\n\n", style="bold red")
        text.append(self.why + "\n\n")
        text.append("`sigtop doctor` checks every prerequisite and says how to fix what fails.\n\n", style="bold")
        text.append("Press any key to exit.", style="dim")
        yield Static(text, id="failure")

    def on_key(self, _event: object) -> None:
        self.app.exit(return_code=1)


class SeekScreen(ModalScreen[str | None]):
    """Where to take the replay: a time of day or seconds from here (sigtop.timefmt.seek_target)."""

    BINDINGS = [("escape", "dismiss_none", "Cancel")]

    def __init__(self, now: str, error: str = "") -> None:
        super().__init__()
        self.now, self.error = now, error

    def compose(self) -> ComposeResult:
        text = Text("Seek the replay\n", style="bold")
        text.append(f"now at {self.now}; HH:MM or HH:MM:SS, or +N / -N seconds. Enter goes, Esc cancels.\n")
        if self.error:
            text.append(self.error, style="bold red")
        with Vertical(id="seek"):
            yield Static(text)
            yield Input(placeholder="14:03:07, +30, -120", id="seek-to")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "app.pop_screen", "Close")]

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self.bindings_help = bindings

    def compose(self) -> ComposeResult:
        text = Text("sigtop keys\n\n", style="bold")
        for keys, description in self.bindings_help:
            text.append(f"  {keys:<18} ", style="bold cyan")
            text.append(f"{description}\n")
        text.append("\n" + FILTER_HELP + "\n\n" + HEADER_HELP)
        with VerticalScroll(id="help"):  # scrolls (up, down) where the terminal is smaller than the help
            yield Static(text)

    def on_mount(self) -> None:
        self.query_one("#help", VerticalScroll).focus()
