"""sigtop's commands in Textual's command palette (ctrl+p): every action of the keys, by name,
and what has no key of its own (sort by any column, filter presets, saving the view).

Each command is a `SystemCommand` the app yields after Textual's own; what a command does is
one of the app's actions, so the palette and the keys cannot disagree.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from sigtop.tables import TABLES

if TYPE_CHECKING:
    from sigtop.ui.app import SigtopApp

# Filter presets: (title, filter text, what it shows). The text is what the filter box would
# take, so a preset is also a lesson in the filter's syntax (shown in the header after).
PRESETS = (
    ("only failures", "is:failed", "sends that failed (EPERM, ESRCH, ...), by errno"),
    ("only fatal signals", "is:fatal", "signals whose default action ends the process"),
    ("only what did not take effect", "is:noeffect", "ignored, merged, lost, failed, pending, discarded or suppressed"),
)


def commands(app: SigtopApp) -> Iterator[SystemCommand]:
    """The palette's sigtop commands, for the table shown now."""
    for name, spec in TABLES.items():
        yield SystemCommand(
            f"Show the {spec.title} table", f"key {spec.key}", functools.partial(app.action_show_table, name)
        )
    table = app.active
    spec = TABLES[table]
    sorted_by, _descending = app.settings.sort(table)
    for column in spec.columns:
        if column.name == sorted_by:
            continue
        label = column.label if column.label != "COMM" else f"COMM ({column.name.replace('_', ' ')})"
        yield SystemCommand(
            f"Sort by {label}",
            f"the {spec.title} table, largest first",
            functools.partial(app.sort_by, column.name),
            False,
        )
    yield SystemCommand("Invert the sort order", "key I", app.action_invert_sort)
    folded = app.settings.fold
    yield SystemCommand(
        "Unfold one-off senders" if folded else "Fold one-off senders",
        "key f: each child's SIGCHLD " + ("one row each" if folded else "one row per name"),
        app.action_fold,
    )
    for by in ("", *TABLES["flows"].groupings):
        if by != app.settings.group:
            title = f"Group the flows by {by}" if by else "Ungroup the flows"
            yield SystemCommand(
                title, "key g cycles: sender name, target, signal, none", functools.partial(app.group_by, by)
            )
    yield SystemCommand(
        "Show the flows as a list" if app.settings.tree else "Show the flows as a tree of senders",
        "key T (F5): each sender's flows under its parent's, as htop's F5",
        app.action_tree,
    )
    if getattr(app, "seekable", False):
        yield SystemCommand("Replay: one interval back", "key [", functools.partial(app.action_replay_step, -1))
        yield SystemCommand("Replay: one interval on", "key ]", functools.partial(app.action_replay_step, 1))
        yield SystemCommand("Replay: go to a time", "key t: HH:MM:SS, or +/-N seconds", app.action_replay_seek)
    for title, text, what in PRESETS:
        yield SystemCommand(f"Filter: {title}", f"{text}: {what}", functools.partial(app.apply_filter, text))
    for preset in app.config.presets:  # the settings file's own
        yield SystemCommand(f"Filter: {preset.name}", preset.filter, functools.partial(app.apply_filter, preset.filter))
    container = app.cursor_container()
    if container:
        yield SystemCommand(
            "Filter: only this container", f"ctr:{container}", functools.partial(app.apply_filter, f"ctr:{container}")
        )
    if app.flow_filter:
        yield SystemCommand("Clear the filter", f"now: {app.flow_filter.describe()}", app.action_clear_filter)
    yield SystemCommand("Resume" if app.paused else "Pause", "key space: the view (counting goes on)", app.action_pause)
    yield SystemCommand("Clear the counts", "key c: forget every count so far", app.action_clear)
    yield SystemCommand(
        "Save these settings", "theme, table, sorts, folding and filter, to the settings file, for the next start",
        app.save_settings,
    )  # fmt: skip
    yield SystemCommand("Save the view as SVG", "a screenshot, in the current directory", app.save_view_svg)
    yield SystemCommand(
        "Save the view as JSON", "what is shown, as sigtop batch --json writes it, in the current directory",
        app.save_view_json,
    )  # fmt: skip
