"""What every table is: named columns, one selection function, JSON, a plain-text rendering, a
detail, a key. Each table module defines one `TableSpec`; sigtop.tables registers them, and
the app, the report and the exporter are built from that registry.

Presentation is rich only (no widgets), so it runs without a terminal and the
batch report loads no Textual. Every string a process controls arrives
sanitised by the model and becomes `rich.text.Text`, never markup. Derived
text (a flow's REASON, a signalfd's health) is worked out from the rows when
shown, never stored into them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from sigtop.filters import FlowFilter
    from sigtop.registry import ProcessRegistry


class SignalModel(Protocol):
    """What the tables read of the model (sigtop.model.SignalModel is one): they are handed it,
    they never build or import it, so data flows one way: the model folds, the tables show."""

    registry: ProcessRegistry
    last_ts: float
    duration_s: float
    flows: Any  # {FlowRowKey: FlowRow}
    signalfds: Any  # {(pid, fd): SignalfdRow}
    sigreturns: Any  # {pid or (pid, gen): SigreturnRow}
    deaths: Any  # deque of Death
    deaths_seen: int
    deaths_followed: bool
    alerts: Any  # deque of Alert
    fates_followed: bool
    light: bool


@dataclass
class View:
    """What a cell is worked out against: the model, the time it is shown for, and a cache of
    derived values (one REASON per row per view, however often it is asked for)."""

    model: SignalModel
    now: float = 0.0
    _cache: dict[tuple[str, int], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.now:
            self.now = self.model.last_ts or time.time()

    def remember(self, name: str, row: Any, value: Any) -> None:
        """A value worked out for a row by the view's arrangement (its depth in a tree)."""
        self._cache[(name, id(row))] = value

    def known(self, name: str, row: Any, default: Any = None) -> Any:
        return self._cache.get((name, id(row)), default)

    def derived(self, name: str, row: Any, compute: Callable[[], Any]) -> Any:
        key = (name, id(row))
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


Cell = Text | str


@dataclass(frozen=True)
class Column:
    name: str  # stable id: sorts, settings and tests name a column by it
    label: str  # the header
    sort_key: Callable[[Any, View], Any]
    cell: Callable[[Any, View], Cell]
    numeric: bool = False
    # When the terminal is too narrow for every column, the lowest priority
    # goes first: a table keeps who, what and the outcome longest.
    priority: int = 50
    # A text column that may be cut to this many cells (ending in "…") before a column of lower
    # priority than it must go: names and reasons stay, shortened, on an 80-column terminal.
    min_width: int = 0
    # Meaningful only while watching (the last interval's rate, time since):
    # the batch report, printed once at the end, leaves these out.
    live_only: bool = False


@dataclass(frozen=True)
class DetailTable:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    empty: str = "none"


@dataclass(frozen=True)
class Detail:
    """A row's drill-down, as data: the UI shows it, a test reads it."""

    title: str
    sections: tuple[Text, ...]
    tables: tuple[DetailTable, ...] = ()
    sparkline: tuple[float, ...] | None = None  # a series to draw (oldest first), with its caption
    sparkline_caption: str = ""


class TableState:
    """A table's rows and how batches fold into them (each table module has one; the model holds
    one of each registered table and folds every batch into each, in the registry's order)."""

    rows: Any

    def fold(self, batch: Any, model: SignalModel) -> None:
        """A batch's deltas (after the registry has taken its processes)."""

    def evict(self, max_rows: int) -> int:  # noqa: ARG002 - a table bounded otherwise ignores it
        """Drop rows beyond max_rows, least recently moved first; how many went."""
        return 0

    def clear(self) -> None:
        """Forget every count (state that is not a count may stay)."""


def fair_shares(held: dict[int, int], excess: int) -> dict[int, int]:
    """How many rows each owner gives up so that `excess` go, taken from whoever holds most:
    every owner is brought down towards one level, and no owner below it loses any."""
    level = max(held.values(), default=0)
    if excess <= 0 or level == 0:
        return {}
    low = 0  # the highest level whose cut frees at least `excess` (a cut to 0 frees everything)
    high = level
    while low < high:
        mid = (low + high + 1) // 2
        if sum(max(0, n - mid) for n in held.values()) >= excess:
            low = mid
        else:
            high = mid - 1
    shares = {uid: n - (low + 1) for uid, n in held.items() if n > low + 1}
    left = excess - sum(shares.values())
    for uid, n in sorted(held.items(), key=lambda item: -item[1]):  # one more from each at the level
        if left <= 0:
            break
        if n > low:
            shares[uid] = shares.get(uid, 0) + 1
            left -= 1
    return shares


def evict_fairly(rows: dict, max_rows: int, owner: Callable[[Any], int], worth: Callable[[Any], Any]) -> list:
    """Take rows beyond max_rows out of `rows`, from the owners (uids) holding most, each
    owner's least worth keeping first (`worth` sorts ascending), so that one user's churn
    cannot push out another's evidence. The rows taken, for the table to count or fold."""
    excess = len(rows) - max_rows
    if excess <= 0:
        return []
    by_owner: dict[int, list[Any]] = {}
    for k, row in rows.items():
        by_owner.setdefault(owner(row), []).append(k)
    taken = []
    for uid, n in fair_shares({uid: len(keys) for uid, keys in by_owner.items()}, excess).items():
        for k in sorted(by_owner[uid], key=lambda k: worth(rows[k]))[:n]:
            taken.append(rows.pop(k))
    return taken


@dataclass(frozen=True)
class ExportOptions:
    """What `sigtop exporter` was asked for, handed to each table's metrics."""

    label_by: str = ""  # "", "comm" or "container": opt-in labels, bounded by top
    top: int = 20
    label_min: int = 10  # times a value must be seen before it gets a series of its own


class TableMetrics:
    """A table's part of the exporter: counters folded from batches' deltas (never from the model's
    rows, which are evicted: a Prometheus counter must never go down), read at scrape time.
    Labels are bounded values only, never a pid or a comm (unless asked for, and then bounded)."""

    def apply(self, batch: Any) -> None:
        """A batch's deltas (under the exporter's lock)."""

    def after_model(self, model: SignalModel) -> None:
        """With detail events: the model has folded the batch too (deaths, matched latencies)."""

    def collect(self) -> Iterable[Any]:
        """Its metric families (prometheus_client's), as of the last batch."""
        return ()


@dataclass(frozen=True)
class TableSpec:
    name: str  # flows, signalfd, ...: the JSON key and the tab's id
    title: str
    key: str  # the key that shows it
    columns: tuple[Column, ...]
    default_sort: str  # a column's name
    # Every row with its stable key (the UI keeps the cursor on it across refreshes).
    rows: Callable[[SignalModel], Iterable[tuple[str, Any]]]
    # The one selection function: TUI, batch, record and the exporter filter with it.
    select: Callable[[SignalModel, Any, FlowFilter], bool]
    to_json: Callable[[SignalModel, Any], dict[str, Any]]
    detail: Callable[[SignalModel, Any], Detail]
    json_order: Callable[[Any], Any] | None = None  # the JSON's row order (None: as the model keeps them)
    empty: str = ""  # why the table is empty, and what fills it
    # Why this source cannot fill it at all (None: it can): said in place of `empty`, and the JSON
    # then gives null and this, never an empty list that would read "none happened".
    unavailable: Callable[[SignalModel], str | None] | None = None
    state: Callable[[], TableState] | None = None  # its rows and fold (None: rows of the model's own parts)
    # The view's folding of selected rows into fewer (one-off senders into one row each), if any.
    fold: Callable[[list[tuple[str, Any]]], list[tuple[str, Any]]] | None = None
    # The view's groupings of selected rows (name -> rows summed by it), if any: g cycles them.
    group: Callable[[list[tuple[str, Any]], str], list[tuple[str, Any]]] | None = None
    groupings: tuple[str, ...] = ()
    # The view's tree (htop's F5): sorted rows put under their ancestors' (depths on the View), if any.
    tree: Callable[[SignalModel, list[tuple[str, Any]], View], list[tuple[str, Any]]] | None = None
    metrics: Callable[[ExportOptions], TableMetrics] | None = None  # its part of the exporter, if any
    other_keys: tuple[str, ...] = ()  # more keys that show it (the alerts' `a`)
    # batch's plain-text heading, from the report's document (None: the title); a table printed
    # even when it has no rows (the flows: "0 signals" is an answer).
    plain_title: Callable[[dict[str, Any]], str] | None = None
    printed_empty: bool = False
    help: str = ""  # its paragraph in the help screen: what its words and columns mean
    # The container a row is of ("" on the host; the palette's "only this container"), if any.
    container: Callable[[Any], str] | None = None

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name} has no column {name!r}")

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def selected(self, model: SignalModel, flt: FlowFilter | None) -> list[tuple[str, Any]]:
        """The rows the filter selects (all without one)."""
        if not flt:
            return list(self.rows(model))
        return [(key, row) for key, row in self.rows(model) if self.select(model, row, flt)]

    def sorted_rows(
        self,
        model: SignalModel,
        flt: FlowFilter | None,
        column: str | None = None,
        descending: bool = True,
        limit: int | None = None,
        view: View | None = None,
        fold: bool = False,
        group: str = "",
        tree: bool = False,
    ) -> list[tuple[str, Any]]:
        """The selected rows (folded, where asked and the table folds), sorted by a column (ties by
        key), as a tree where asked and the table makes one (siblings in that order); only the top
        `limit` (the model keeps the rest)."""
        view = view or View(model)
        by = self.column(column or self.default_sort)
        rows = self.view_rows(self.selected(model, flt), fold, "" if tree else group)
        rows.sort(key=lambda item: (by.sort_key(item[1], view), item[0]), reverse=descending)
        if tree and self.tree is not None:
            rows = self.tree(model, rows, view)
        return rows if limit is None else rows[:limit]

    def view_rows(self, rows: list[tuple[str, Any]], fold: bool, group: str) -> list[tuple[str, Any]]:
        """Rows as the view shows them: grouped (where asked and the table groups so), else folded."""
        if group and self.group is not None and group in self.groupings:
            return self.group(rows, group)
        if fold and self.fold is not None:
            return self.fold(rows)
        return rows

    def json_rows(self, model: SignalModel, flt: FlowFilter | None) -> list[dict[str, Any]]:
        rows = [row for _key, row in self.selected(model, flt)]
        if self.json_order is not None:
            rows.sort(key=self.json_order)
        return [self.to_json(model, row) for row in rows]

    def plain_table(self, model: SignalModel, flt: FlowFilter | None, title: str, width: int) -> Table:
        """A rich table of this table's rows, without the live-only columns; where the width is too
        small for all of them, the lowest-priority columns go first, as in the live view."""
        view = View(model)
        columns = [column for column in self.columns if not column.live_only]
        rows = self.sorted_rows(model, flt, view=view)
        cells = [[column.cell(row, view) for column in columns] for _key, row in rows]
        return rich_table(title, columns, cells, width)


def rich_table(title: str, columns: Sequence[Column], cells: list[list[Cell]], width: int) -> Table:
    table = Table(title=title, title_justify="left")
    widths = [
        max([cell_len(column.label)] + [cell_len(str(getattr(c[i], "plain", c[i]))) for c in cells]) + 3
        for i, column in enumerate(columns)
    ]
    shown = set(range(len(columns)))
    for i in sorted(shown, key=lambda i: (columns[i].priority, -i)):
        if sum(widths[j] for j in shown) + 1 <= width or columns[i].priority >= 100:
            continue
        shown.discard(i)
    for i, column in enumerate(columns):
        if i in shown:
            table.add_column(column.label, justify="right" if column.numeric else "left")
    for row_cells in cells:
        table.add_row(*(cell for i, cell in enumerate(row_cells) if i in shown))
    return table


# ---- cells shared by the tables ------------------------------------------------------------


def fmt_number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def num(get: Callable[[Any], float], style: Callable[[Any], str] | None = None) -> Callable[[Any, View], Text]:
    """A number cell (sorting reads the model's numbers, Column.sort_key, never the cell text)."""
    return lambda row, _view: Text(fmt_number(get(row)), style=style(row) if style else "", justify="right")


def pid_cell(get: Callable[[Any], int]) -> Callable[[Any, View], Text]:
    """A pid: an identifier, not a quantity (no thousands separators)."""
    return lambda row, _view: Text(str(get(row)), justify="right")


def by(get: Callable[[Any], Any]) -> Callable[[Any, View], Any]:
    """A sort key that needs only the row."""
    return lambda row, _view: get(row)


def text(get: Callable[[Any], str], style: str = "") -> Callable[[Any, View], Text]:
    return lambda row, _view: Text(get(row), style=style)


MAX_CMDLINE_SHOWN = 300


def process_text(model: SignalModel, pid: int, label: str, gen: int | None = None) -> Text:
    """A process's /proc details, as plain text (cmdline and comm are the process's own)."""
    out = Text(f"{label}: ", style="bold")
    if pid == 0:
        return out.append("the kernel (no sending process)")
    if pid < 0:
        return out.append(f"process group {-pid}")
    registry = model.registry
    info = registry.procs.get(pid) if gen is None else registry.proc_of(pid, gen)
    if info is None:
        return out.append(f"pid {pid} (gone before sigtop could read /proc)")
    ns = f"  (pid in its namespaces: {' / '.join(map(str, info.nspid[1:]))})" if len(info.nspid) > 1 else ""
    out.append(f"pid {pid}{ns}  comm {info.comm}  user {info.user or '?'}\n")
    cmdline = info.cmdline
    shown = cmdline[:MAX_CMDLINE_SHOWN] + "..." if len(cmdline) > MAX_CMDLINE_SHOWN else cmdline or "-"
    out.append(f"  cmdline: {shown}\n")
    chain = " <- ".join(f"{p} {c}" for p, c in info.parents) or "-"
    out.append(f"  parents: {chain}\n")
    out.append(f"  cgroup:  {info.cgroup or '-'}")
    return out
