"""SignalTable: a DataTable that shows one table's rows as a snapshot gives them.

Each snapshot is reconciled by row key (remove the gone, add the new, update
only the cells that changed, then reorder) instead of clearing and
rebuilding, so the cursor stays on its row and the scroll position stays put
while the numbers move. When the terminal is too narrow for every column,
the lowest-priority columns are hidden first, and text columns that may be
shortened (names, reasons) are cut to fit before anything they outrank goes. The rows come sorted and
filtered from the model's thread (sigtop.ui.feed); this widget only draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import DataTable

from sigtop.tables.base import TableSpec

SORT_MARKER_WIDTH = 2  # " ▼"
# Past this share of rows gone, one clear() and rebuild is cheaper than removing each.
REBUILD_SHARE = 0.5


class KeyedText(Text):
    """A cell that knows its row's key: the first cell of every row, so the public
    DataTable.sort(key=...) (which sees cells, not keys) can order rows by key."""

    def __init__(self, text: Text | str, row_key: str) -> None:
        if isinstance(text, Text):
            super().__init__(text.plain, style=text.style, justify=text.justify, no_wrap=True)
            for span in text.spans:
                self.spans.append(span)
        else:
            super().__init__(text, no_wrap=True)
        self.row_key = row_key


def _width(cell: Text | str) -> int:
    return cell.cell_len if isinstance(cell, Text) else cell_len(cell)


def _same(shown: object, new: Text | str) -> bool:
    """Whether a cell on screen already shows this (Text's == ignores its base style)."""
    if isinstance(shown, Text) and isinstance(new, Text):
        return shown.plain == new.plain and shown.style == new.style and shown.spans == new.spans
    return shown == new


class SignalTable(DataTable[Any]):
    """One of sigtop's tables (flows, signalfd, sigreturn), as the spec defines it."""

    class ColumnsFitted(Message):
        """The columns shown changed (a resize, a wider cell): the header says how many are hidden."""

        def __init__(self, table: SignalTable) -> None:
            super().__init__()
            self.table = table

    def __init__(self, spec: TableSpec, hidden: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.spec = spec
        # Columns the settings file hides (sigtop.config), never shown at any width.
        self.hidden = {spec.column_names().index(name) for name in hidden}
        self.sort_column = spec.column_names().index(spec.default_sort)  # an index into spec.columns
        self.descending = True
        self.visible_columns: list[int] = []  # indices into spec.columns
        self.cut_widths: dict[int, int] = {}  # shortened columns: index -> cells
        self._cells: dict[str, list[Text | str]] = {}
        # Every column at its full width, the table scrolled sideways (←/→) instead of fitted (w).
        self.wide = False

    # ---- columns -------------------------------------------------------------

    def on_mount(self) -> None:
        self._set_columns([i for i in range(len(self.spec.columns)) if i not in self.hidden], {})

    def _set_columns(self, visible: list[int], cut: dict[int, int]) -> None:
        self.clear(columns=True)
        self.visible_columns = visible
        self.cut_widths = cut
        for i in visible:
            # room for the sort marker, so that sorting never changes a width
            self.add_column(self._label(i), key=str(i), width=cut.get(i))

    def _label(self, i: int) -> Text:
        label = self.spec.columns[i].label
        if i != self.sort_column:
            return Text(label + " " * SORT_MARKER_WIDTH)
        return Text(label + (" ▼" if self.descending else " ▲"), style="bold underline")

    def _relabel(self) -> None:
        for i, column in zip(self.visible_columns, self.columns.values(), strict=True):
            column.label = self._label(i)
        self.refresh()

    def _fit(self, cells: dict[str, list[Text | str]]) -> tuple[list[int], dict[int, int]]:
        """The columns that fit the width, and the widths of those cut to fit: drop the lowest
        priority first; once the next to go is a shortenable one, cut the shown text columns
        (down to their min_width) instead, if that fits."""
        everything = [i for i in range(len(self.spec.columns)) if i not in self.hidden]
        if self.wide:
            return everything, {}
        available = self.size.width - self.styles.scrollbar_size_vertical
        if available <= 0:  # not laid out yet
            return self.visible_columns or everything, self.cut_widths
        pad = 2 * self.cell_padding
        columns = self.spec.columns
        widths = {}
        for i, column in enumerate(columns):
            content = max((_width(row[i]) for row in cells.values()), default=0)
            widths[i] = max(content, cell_len(column.label) + SORT_MARKER_WIDTH) + pad
        least = {i: min(widths[i], max(columns[i].min_width, cell_len(columns[i].label)) + pad) for i in everything}
        shown = set(everything)
        by_priority = sorted(everything, key=lambda i: (columns[i].priority, -i))
        for i in by_priority:
            if sum(widths[j] for j in shown) <= available:
                break
            cut_to_least = sum(least[j] if columns[j].min_width else widths[j] for j in shown)
            if columns[i].min_width and cut_to_least <= available:
                break
            if columns[i].priority >= 100 or i == self.sort_column:  # identity, and what it is sorted by
                continue
            shown.discard(i)
        visible = [i for i in everything if i in shown]
        # Cut what is still too much off the shortenable columns, a cell at a time off the one
        # with the most to spare, so that names and reasons end up about as readable.
        excess = sum(widths[i] for i in visible) - available
        now = {i: widths[i] for i in visible if columns[i].min_width}
        while excess > 0 and now:
            i = max(now, key=lambda j: (now[j] - least[j], -columns[j].priority))
            if now[i] <= least[i]:
                break
            now[i] -= 1
            excess -= 1
        return visible, {i: w - pad for i, w in now.items() if w < widths[i]}

    @property
    def columns_cut_off(self) -> int:
        """Columns that did not fit the width (those the settings file hides aside)."""
        return len(self.spec.columns) - len(self.hidden) - len(self.visible_columns)

    def set_wide(self, wide: bool) -> None:
        """Every column, scrolled sideways; or those that fit, fitted."""
        self.wide = wide
        self.fixed_columns = 2 if wide else 0  # who sends stays in view while the rest scrolls
        if self._cells:
            self._reconcile(self._cells, self._order_keys())
        if not wide:
            self.scroll_to(x=0, animate=False)

    def on_resize(self, _event: events.Resize) -> None:
        if self._cells:
            self._reconcile(self._cells, self._order_keys())

    # ---- sorting ---------------------------------------------------------------

    @property
    def sort_name(self) -> str:
        return self.spec.columns[self.sort_column].name

    def set_sort(self, column: str, descending: bool) -> None:
        self.sort_column = self.spec.column_names().index(column)
        self.descending = descending
        self._relabel()

    def next_sort(self, step: int) -> str:
        """The name of the visible column left (-1) or right (+1) of the one sorted by."""
        visible = self.visible_columns or list(range(len(self.spec.columns)))
        here = visible.index(self.sort_column) if self.sort_column in visible else 0
        return self.spec.columns[visible[(here + step) % len(visible)]].name

    def column_name(self, column_key: Any) -> str:
        """The spec's column name of a DataTable column key."""
        return self.spec.columns[int(column_key.value)].name

    # ---- rows --------------------------------------------------------------------

    def cursor_key(self) -> str | None:
        if not self.row_count or not 0 <= self.cursor_row < self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def show(self, keys: Sequence[str], cells: Sequence[Sequence[Text | str]]) -> None:
        """Show these rows (every column's cell of each), in this order: reconcile against the screen."""
        self._reconcile({key: list(row) for key, row in zip(keys, cells, strict=True)}, list(keys))

    def _cell(self, row: list[Text | str], i: int, key: str, first: int) -> Text | str:
        """What column i shows of a row: cut with an ellipsis where the column is cut; the first
        column's cell carries the row's key."""
        value = row[i]
        width = self.cut_widths.get(i)
        if width is not None and _width(value) > width:
            value = value.copy() if isinstance(value, Text) else Text(value)
            value.truncate(width, overflow="ellipsis")
        return KeyedText(value, key) if i == first else value

    def _order_keys(self) -> list[str]:
        return [row.key.value for row in self.ordered_rows]

    def _reconcile(self, cells: dict[str, list[Text | str]], order: list[str]) -> None:
        self._cells = cells
        cursor = self.cursor_key()
        scroll = self.scroll_y
        visible, cut = self._fit(cells)
        rebuilt = (visible, cut) != (self.visible_columns, self.cut_widths)
        present = {rk.value for rk in self.rows}
        gone = present - cells.keys()
        with self.app.batch_update():
            if rebuilt:
                self._set_columns(visible, cut)
                present, gone = set(), set()
                self._relabel()
            elif present and len(gone) > len(present) * REBUILD_SHARE:
                self.clear()
                present, gone = set(), set()
            for key in gone:
                self.remove_row(key)
            first = self.visible_columns[0] if self.visible_columns else 0
            for key in order:
                row = cells[key]
                if key in present:
                    for i in self.visible_columns:
                        value = self._cell(row, i, key, first)
                        if not _same(self.get_cell(key, str(i)), value):
                            self.update_cell(key, str(i), value, update_width=i not in self.cut_widths)
                else:
                    self.add_row(*(self._cell(row, i, key, first) for i in self.visible_columns), key=key)
            if self._order_keys() != order:
                rank = {key: n for n, key in enumerate(order)}
                self.sort(str(first), key=lambda cell: rank[cell.row_key])
        if rebuilt:  # a column came or went (a wider cell, a resize): the rows were added again
            self.post_message(self.ColumnsFitted(self))
            self.scroll_to(y=scroll, animate=False, immediate=True)
        if cursor is not None and cursor in cells:
            index = self.get_row_index(cursor)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
