"""The model as one JSON document (a stable interface for scripts) or rich tables.

Pure functions of the model: no I/O beyond writing to the console given.
The tables render from the live view's column definitions (ui.columns,
which loads no Textual), so both show the same thing.
"""

from __future__ import annotations

import time
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sigtop.containers import container_of
from sigtop.filters import FlowFilter
from sigtop.model import OVERFLOW, FlowRow, SignalModel
from sigtop.names import (
    GENERATED_RESULTS,
    Result,
    errno_name,
    sfd_flag_names,
    signal_mask_names,
    signame,
    syscall_name,
)
from sigtop.reasons import explain_row, signalfd_health, target_disposition
from sigtop.records import latency_bucket_bounds
from sigtop.ui.columns import TABLES, TableSpec, sorted_rows


def flow_syscall(row: FlowRow) -> str:
    return syscall_name(row.syscall)


def flow_json(row: FlowRow, model: SignalModel | None = None) -> dict[str, Any]:
    key = row.key
    sender = model.proc_of(key.sender_pid, key.sender_gen) if model is not None else None
    target = model.proc_of(key.target_pid, key.target_gen) if model is not None else None
    data: dict[str, Any] = {
        "sender_pid": key.sender_pid,
        "sender_comm": "[overflow]" if key.via == OVERFLOW else row.sender_comm if key.sender_pid else "[kernel]",
        "target_pid": key.target_pid if key.pidfd < 0 else None,
        "target_comm": row.target_comm,
        "sig": key.sig,
        "signame": signame(key.sig),
        "syscall": flow_syscall(row),
        "origin": key.via,
        "count": row.count,
        "results": {r.name: row.results[r] for r in GENERATED_RESULTS},
        "no_signal": row.results[Result.no_signal],
        "errors": {errno_name(e): n for e, n in sorted(row.errors.items())},
        "first_ts": round(row.first_ts, 6),
        "last_ts": round(row.last_ts, 6),
    }
    data.update(fates_json(row, model.fates_followed if model is not None else False))
    if model is not None:
        reason = explain_row(model, row, model.last_ts or time.time())
        data["reason"] = reason.short or None  # why its signals did not all take effect; None: they did
        data["reasons"] = reason.lines
        data["target_disposition"] = target_disposition(model, row)
    if row.failed and key.target_pid == 0 and key.pidfd < 0:
        # Failed sends are counted per errno, not per pid asked for (a made-up pid is free);
        # the pids asked for are in the detail events (none in batch mode).
        data["target_pid"] = None
        data["asked_pids"] = asked_pids(row)
    # A process is its pid and its start time: a later process given the same pid is another row.
    data["sender_started"] = round(sender.started, 2) if sender and key.sender_pid and sender.started else None
    data["target_started"] = round(target.started, 2) if target and key.target_pid > 0 and target.started else None
    data["sender_cgroup"] = sender.cgroup if sender and key.sender_pid else None
    data["sender_container"] = _container_json(sender.cgroup) if sender and key.sender_pid else None
    if data["sender_container"] is None and row.sender_container:  # gone from /proc: the kernel's cgroup named it
        data["sender_container"] = {"label": row.sender_container}
    data["target_cgroup"] = target.cgroup if target and key.target_pid > 0 else None
    data["target_container"] = _container_json(target.cgroup) if target and key.target_pid > 0 else None
    if key.pidfd >= 0:
        data["target_pidfd"] = key.pidfd
    data["spoofed"] = key.spoofed
    # A pid of the sender's own pid namespace (a container's), not the host's: target_pid is that number.
    data["target_in_sender_namespace"] = bool(key.ns_of)
    data["sender_nspid"] = sender.nspid if sender and len(sender.nspid) > 1 else None
    data["target_nspid"] = target.nspid if target and len(target.nspid) > 1 else None
    if key.spoofed:
        claims = [e for e in row.events if e.has_info]
        # What the forged siginfo said (the latest event's, else the kernel's first), beside the real sender.
        claim = (claims[-1].info_pid, claims[-1].info_uid) if claims else row.claimed
        data["claimed"] = {"si_pid": claim[0], "si_uid": claim[1]} if claim else None
        data["sender_user"] = sender.user if sender else None
    return data


MAX_ASKED_PIDS = 20


def fates_json(row: FlowRow, followed: bool) -> dict[str, Any]:
    """What became of the flow's queued signals ("delivered" in results means queued); None where the
    source did not follow them (no BTF, or a recording made without)."""
    if not followed:
        return dict.fromkeys(
            ("queued", "taken", "read", "discarded", "pending", "pending_since", "untracked", "latency_ns")
        )
    latency = row.latency
    return {
        "queued": row.queued,
        "taken": row.taken,
        "read": row.read,
        "discarded": row.discarded,
        "pending": row.pending,
        "pending_since": round(row.pending_since, 6) if row.pending else None,
        "untracked": row.untracked,
        # Every take timed in the kernel, in half-octave buckets: p50/p99 are their bucket's upper
        # bound (capped by the max), so within a third above the true value; max is exact.
        "latency_ns": None
        if latency is None or not latency.count
        else {
            "count": latency.count,
            "p50": latency.quantile(0.5),
            "p99": latency.quantile(0.99),
            "max": latency.max_ns,
            "buckets": [[*latency_bucket_bounds(i), n] for i, n in enumerate(latency.buckets) if n],
        },
    }


def _container_json(cgroup: str) -> dict[str, str] | None:
    """Which container or service a cgroup names; None on the host."""
    found = container_of(cgroup)
    if not found.kind:
        return None
    doc = {"kind": found.kind, "name": found.name, "label": found.label}
    if found.pod:
        doc.update(pod=found.pod, runtime=found.runtime)
    return doc


def asked_pids(row: FlowRow) -> list[int]:
    """The distinct pids a failed flow's sends asked for, newest first, from its detail events."""
    seen: dict[int, None] = {}
    for event in reversed(row.events):
        if event.target_pid not in seen:
            seen[event.target_pid] = None
            if len(seen) == MAX_ASKED_PIDS:
                break
    return list(seen)


def to_json(model: SignalModel, flow_filter: FlowFilter | None = None) -> dict[str, Any]:
    """The batch-mode document; see README for the fields."""
    flows = [r for r in model.flows.values() if flow_filter is None or flow_filter.matches_flow(r)]
    flows.sort(key=lambda r: (-r.attempts, r.key.sender_pid, r.key.target_pid, r.key.sig))
    duration = model.duration_s
    return {
        "duration_s": round(duration, 3),
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
            "signals_uncounted": model.stats.signals_missed,
            "detail_events_skipped": model.stats.events_dropped,
            "detail_events_trimmed": model.events_trimmed,
            # Queued signals whose end could not be followed (the pending or exits map was full), and
            # signals taken with no record of being queued (queued before sigtop attached).
            "fates_untracked": model.stats.pending_full,
            "exits_unsettled": model.stats.exits_full,
            "taken_unqueued": model.stats.taken_unqueued,
        },
        "flows": [flow_json(r, model) for r in flows],
        "signalfd": [
            {
                "pid": r.pid,
                "comm": r.comm,
                "fd": r.fd,
                "mask": r.mask,
                "signals": signal_mask_names(r.mask),
                "flags": sfd_flag_names(r.flags),
                "calls": r.calls,
                "created_before_trace": not r.created_ts,
                # Signals of the mask some thread does not block, with those threads: they go to a
                # handler or the default action, never to the fd.
                "unblocked": {
                    signame(sig): tids for sig, tids in signalfd_health(r.mask, model.dispositions.get(r.pid)).items()
                },
            }
            for r in sorted(model.signalfds.values(), key=lambda r: (r.pid, r.fd))
            if flow_filter is None or flow_filter.matches_pid_comm(r.pid, r.comm)
        ],
        # What looks like an attack: SROP's first step, a forged siginfo, probing (bounded, newest last).
        "alerts": [
            {
                "kind": a.kind,
                "ts": round(a.ts, 6),
                "pid": a.pid,
                "tid": a.tid or None,
                "comm": a.comm,
                "detail": a.detail,
                "cgroup": a.cgroup,
                "parents": [{"pid": p, "comm": c} for p, c in a.parents],
            }
            for a in model.alerts
        ],
        # Processes that ended because of a signal, and who or what sent it (needs detail events).
        "deaths": [
            {
                "pid": d.pid,
                "comm": d.comm,
                "sig": d.sig,
                "signame": signame(d.sig),
                "core_dumped": d.core,
                "ts": round(d.ts, 6),
                "lifetime_s": round(d.lifetime_s, 3) if d.lifetime_s is not None else None,
                "cause": d.cause,
                "cause_kind": d.cause_kind,
                "sender_pid": d.sender_pid or None,
                "parent_pid": d.parent,
                "cgroup": d.cgroup or None,
                "container": _container_json(d.cgroup) if d.cgroup else None,
            }
            for d in model.deaths
            if flow_filter is None or flow_filter.matches_pid_comm(d.pid, d.comm)
        ],
        "sigreturn": [
            {
                "pid": r.pid,
                "comm": r.comm,
                "count": r.sigreturns,
                "per_sec": round(r.sigreturns / duration, 3) if duration else 0.0,
                "handler_deliveries": r.handler_deliveries,
                "balance": r.balance,
                "unmatched": r.unmatched,
            }
            for r in sorted(model.sigreturns.values(), key=lambda r: -r.sigreturns)
            if flow_filter is None or flow_filter.matches_pid_comm(r.pid, r.comm)
        ],
    }


def _table(spec: TableSpec, model: SignalModel, flow_filter: FlowFilter | None, title: str, width: int) -> Table:
    """A rich table of one model table, from the live view's own column definitions; where the
    width is too small for all of them, the lowest-priority columns go first, as in the live view."""
    table = Table(title=title, title_justify="left")
    columns = [column for column in spec.columns if not column.live_only]
    rows = sorted_rows(spec, model, flow_filter or FlowFilter(), spec.default_sort, True)
    cells = [[column.cell(row, model.last_ts) for column in columns] for _key, row in rows]
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


def print_tables(model: SignalModel, console: Console, flow_filter: FlowFilter | None = None) -> None:
    doc = to_json(model, flow_filter)
    title = f"Signal flows ({doc['duration_s']} s, {doc['total_signals']} signals)"
    width = console.width
    console.print(_table(TABLES["flows"], model, flow_filter, title, width))
    if doc["signalfd"]:
        console.print(_table(TABLES["signalfd"], model, flow_filter, "signalfd", width))
    if doc["sigreturn"]:
        console.print(_table(TABLES["sigreturn"], model, flow_filter, "rt_sigreturn", width))
    dropped = doc["dropped"]
    if dropped["signals_uncounted"]:
        console.print(Text(f"{dropped['signals_uncounted']} signals NOT counted (the kernel skipped sigtop's probe)"))
    if dropped["program_misses"]:
        misses = ", ".join(f"{probe} {n}" for probe, n in dropped["program_misses"].items())
        console.print(Text(f"probe runs skipped by the kernel: {misses}", style="red"))
    if doc["lost_events"]:
        console.print(Text(f"{doc['lost_events']} detail events lost (counts are exact)", style="red"))
