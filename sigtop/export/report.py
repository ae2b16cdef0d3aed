"""The report: the model as one JSON document (a stable interface for scripts), or as plain tables.

Pure functions of the model, built from the table registry (sigtop.tables):
each table gives its rows, its JSON and its plain table, selected by the same
filter the live view uses. No I/O beyond writing to the console given.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from sigtop.filters import FlowFilter
from sigtop.model import SignalModel
from sigtop.names import LIGHT_UNSEEN, signame
from sigtop.tables import TABLES
from sigtop.tables.flows import evicted_json, evicted_summary


def to_json(model: SignalModel, flow_filter: FlowFilter | None = None) -> dict[str, Any]:
    """The batch-mode document; see README for the fields."""
    doc: dict[str, Any] = {
        "duration_s": round(model.duration_s, 3),
        "lost_events": model.stats.events_lost,
        # How full each kernel map was at the end (0..1); past 1.0 new flows go to overflow rows.
        "map_fill": {name: round(fill, 4) for name, fill in sorted(model.map_fill.items())},
        "total_signals": model.total_signals,
        "dropped": {
            "flows_map_full": model.stats.flows_full,
            "threads_map_full": model.stats.threads_full,
            "signalfds_map_full": model.stats.signalfds_full,
            "rows_evicted": model.evicted_rows,
            # Runs of sigtop's programs the kernel skipped, by probe; signal_generate's are signals not counted.
            "program_misses": {probe: n for probe, n in sorted(model.program_misses.items()) if n},
            "signals_uncounted": model.stats.signals_uncounted,
            "detail_events_skipped": model.stats.events_dropped,
            "detail_events_trimmed": model.events_trimmed,
            # Queued signals whose end could not be followed (the pending or exits map was full), and
            # signals taken with no record of being queued (queued before sigtop attached).
            "fates_untracked": model.stats.pending_full,
            "exits_unsettled": model.stats.exits_full,
            "taken_unqueued": model.stats.taken_unqueued,
            # --follow: processes started by the followed that found the kernel's pid filter full.
            "pids_not_followed": model.stats.filter_full,
        },
    }
    unavailable = {}
    for name, spec in TABLES.items():
        why = spec.unavailable(model) if spec.unavailable is not None else None
        if why is not None:
            doc[name] = None  # not "none happened": this source cannot see them
            unavailable[name] = why
        else:
            doc[name] = spec.json_rows(model, flow_filter)
    doc["unavailable"] = unavailable  # table -> why it is null
    # --light: what the counts above cannot include (never a zero that reads "none happened").
    doc["mode"] = "light" if model.light else "full"
    doc["unseen"] = list(LIGHT_UNSEEN) if model.light else []
    # Rows given up to stay bounded, by whose they were: counted, never silently gone.
    doc["evicted_flows"] = evicted_json(model.flows_table)
    return doc


def how_it_ended(model: SignalModel, pid: int, running: bool) -> dict[str, Any]:
    """The 'exit' document of `batch --until-exit PID`: killed (how, by whom), exited, or still running."""
    death = next((d for d in model.deaths if d.pid == pid), None)
    if death is not None:
        return {
            "pid": pid,
            "ended": "killed",
            "signame": signame(death.sig),
            "core_dumped": death.core,
            "cause": death.cause,
            "sender_pid": death.sender_pid or None,
            "lifetime_s": round(death.lifetime_s, 3) if death.lifetime_s is not None else None,
            "threads": death.threads,
        }
    if running:
        return {"pid": pid, "ended": None}
    return {"pid": pid, "ended": "exited"}


def print_tables(model: SignalModel, console: Console, flow_filter: FlowFilter | None = None) -> None:
    """Every table that has rows (flows always), then what was missed."""
    doc = to_json(model, flow_filter)
    width = console.width
    for name, spec in TABLES.items():
        if doc[name] is None:
            console.print(Text(f"{spec.title}: {doc['unavailable'][name]}", style="yellow"))
            continue
        if not spec.printed_empty and not doc[name]:
            continue
        title = spec.plain_title(doc) if spec.plain_title else spec.title
        console.print(spec.plain_table(model, flow_filter, title, width))
    dropped = doc["dropped"]
    if dropped["signals_uncounted"]:
        console.print(
            Text(
                f"{dropped['signals_uncounted']} signals NOT counted"
                " (the kernel skipped sigtop's probe, or they were taken never seen sent)"
            )
        )
    if dropped["program_misses"]:
        misses = ", ".join(f"{probe} {n}" for probe, n in dropped["program_misses"].items())
        console.print(Text(f"probe runs skipped by the kernel: {misses}", style="red"))
    if doc["lost_events"]:
        console.print(Text(f"{doc['lost_events']} detail events lost (counts are exact)", style="red"))
    if doc["evicted_flows"]:
        console.print(Text(f"flows evicted to stay within the row cap: {evicted_summary(doc['evicted_flows'])}"))
