"""The death ledger: who or what killed each process that died of a signal.

A death event (the kernel's, from the dying process's SIGCHLD to its parent)
says which signal killed it; the flows that reached it with that signal say
who sent it, and the OOM killer's choices say when it was the OOM killer.
Pure: the flows and the registry are passed in.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable

from sigtop.lru import BoundedLRU
from sigtop.names import CLD_DUMPED, printable, si_code_name, signame
from sigtop.reasons import DEFAULT_CORE, explain_row
from sigtop.registry import ProcessRegistry
from sigtop.tables.deaths import Death
from sigtop.tables.flows import FlowRow
from sigtop.wire import SignalEvent

ESCALATION_S = 60.0  # a SIGTERM then a SIGKILL from one sender within this: a stop timeout
OOM_TO_DEATH_S = 60.0  # an OOM victim that dies of SIGKILL within this was killed by the OOM killer
MAX_OOM_VICTIMS = 1_000


def _threads_ended(e: SignalEvent) -> int | None:
    """Its threads that the signal ended, from the SIGKILLs the kernel gave them: for a fatal
    signal every thread takes one (complete_signal); for a core-dump signal the thread that
    took it goes on to the dump, and only the others get the SIGKILL (zap_threads), whether a
    core is written or not. None: not counted (a recording made before sigtop counted them)."""
    if not e.threads:
        return None
    return e.threads + (1 if e.sig in DEFAULT_CORE else 0)


# What a stop asks first, before its SIGKILL: systemd's KillSignal, docker's and podman's StopSignal.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP})


def _asked_to_stop(kill: FlowRow, reached: list[FlowRow], registry: ProcessRegistry, ts: float) -> FlowRow | None:
    """The stop signal this SIGKILL escalated from, if any: sent to the same process before the
    SIGKILL, within ESCALATION_S, by the same sender, the same program (two runc processes), or
    a process of the same tree (a parent and its child, or two children of one parent)."""
    found = [
        r
        for r in reached
        if r.key.sig in STOP_SIGNALS
        and r.key.sender_pid
        and r.first_ts <= kill.last_ts
        and ts - _last_before(r, kill) < ESCALATION_S
        and _one_stopper(r, kill, registry)
    ]
    return max(found, key=lambda r: (r.key.sender_pid == kill.key.sender_pid, r.last_ts), default=None)


def _last_before(term: FlowRow, kill: FlowRow) -> float:
    """When the stop signal was last sent before the SIGKILL, as near as a row's first and last
    times say (a long-lived row's first send may be long before this stop)."""
    return term.last_ts if term.last_ts <= kill.last_ts else term.first_ts


def _one_stopper(a: FlowRow, b: FlowRow, registry: ProcessRegistry) -> bool:
    pa, pb = a.key.sender_pid, b.key.sender_pid
    if pa == pb or (a.sender_comm and a.sender_comm == b.sender_comm):
        return True
    ia, ib = registry.procs.get(pa), registry.procs.get(pb)
    if ia is None or ib is None:
        return False
    return ia.ppid == pb or ib.ppid == pa or (ia.ppid != 0 and ia.ppid == ib.ppid)


class DeathLedger:
    def __init__(self) -> None:
        # The OOM killer's recent choices: pid -> (when, anon rss in kB), for the deaths' cause.
        self.oom_victims: BoundedLRU[int, tuple[float, int]] = BoundedLRU(MAX_OOM_VICTIMS)

    def oom(self, e: SignalEvent) -> None:
        self.oom_victims.put(e.sender_pid, (e.ts, e.info_value))

    def death(self, e: SignalEvent, flows: Iterable, registry: ProcessRegistry) -> Death:
        """Who or what killed a process: the flows that reached it with that signal, newest first."""
        pid, sig = e.sender_pid, e.sig
        info = registry.procs.get(pid)
        comm = printable(e.comm) or (info.comm if info else "")
        # Only the rows of this process, not of an earlier owner of its pid (its generation).
        gen = registry.gen(pid)
        reached = [r for r in flows if r.key.target_pid == pid and r.key.target_gen == gen and r.count]
        rows = sorted((r for r in reached if r.key.sig == sig), key=lambda r: r.last_ts, reverse=True)
        cause, sender = "not seen (sent before sigtop attached, or a SIGKILL fanned out to its threads)", 0
        kind = "unknown"
        oom = self.oom_victims.get(pid)
        if sig == signal.SIGKILL and oom is not None and 0 <= e.ts - oom[0] < OOM_TO_DEATH_S:
            cause, kind = f"the OOM killer (anon-rss {oom[1] / 1024:.0f} MiB when chosen)", "oom"
            rows = []
        elif rows and rows[0].key.via == "cgroup.kill":
            writer = rows[0].key.sender_pid
            cause = f"{writer} {rows[0].sender_comm} wrote 1 to its cgroup's cgroup.kill"
            kind, sender = "cgroup-kill", writer
            rows = []
        elif rows and rows[0].key.via == "pdeathsig":
            parent = rows[0].key.sender_pid
            cause = f"its parent {parent} {rows[0].sender_comm} exited (PR_SET_PDEATHSIG)"
            kind, sender = "parent-death", parent
            rows = []
        if rows:
            row = rows[0]
            sender = row.key.sender_pid
            if sender == pid:
                cause = "itself (abort)" if sig == signal.SIGABRT else f"itself ({signame(sig)})"
                kind = "self"
            elif sender:
                cause = f"{sender} {row.sender_comm} via {row.key.via}"
                kind = "sender"
                term = _asked_to_stop(row, reached, registry, e.ts) if sig == signal.SIGKILL else None
                if term is not None:
                    kind = "stop-timeout"
                    if term.key.sender_pid == sender:
                        cause += f", after {signame(term.key.sig)} (stop timeout)"
                    else:  # a runtime's stop: runc sends the TERM and the KILL from two processes
                        cause += (
                            f", after {signame(term.key.sig)} from {term.key.sender_pid} {term.sender_comm} "
                            f"{max(0.0, row.last_ts - _last_before(term, row)):.1f} s before (stop timeout)"
                        )
                    why = explain_row(registry, term, e.ts).short
                    if why and term.taken == 0 and why != "discarded at exit":
                        cause += f"; the {signame(term.key.sig)} did nothing ({why})"
            elif row.key.via == "fault":
                cause = f"fault ({si_code_name(sig, max(row.codes, key=row.codes.__getitem__))})"
                kind = "fault"
            elif sig == signal.SIGKILL:
                cause = "the kernel (SI_KERNEL: the OOM killer, or another kernel kill)"
                kind = "kernel"
            else:
                cause = f"the kernel ({row.key.via})"
                kind = "kernel"
        # The kernel measured its life (ns, from task->start_time); /proc's start time otherwise.
        lifetime = e.info_value / 1e9 if e.info_value else (e.ts - info.started if info and info.started else None)
        return Death(
            pid=pid,
            comm=comm,
            sig=sig,
            core=e.code == CLD_DUMPED,
            ts=e.ts,
            parent=e.target_tgid,
            cause=cause,
            cause_kind=kind,
            sender_pid=sender,
            lifetime_s=lifetime,
            cgroup=registry.cgroup_paths.get(e.handler, "") or (info.cgroup if info else ""),
            threads=_threads_ended(e),
        )

    def clear(self) -> None:
        self.oom_victims.clear()
