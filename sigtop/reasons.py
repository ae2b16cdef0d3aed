"""Why a flow's signals did not take effect, in one line, and the whole story: pure, from the model's rows.

The inputs are what the kernel said (each send's result, each queued signal's
fate) and how the target treats the signal now (/proc: handled, ignored,
blocked by which threads). The kernel's own rules (kernel/signal.c) decide
which explanation applies: sig_ignored() for IGNORED, legacy_queue() for a
merge, SIGNAL_UNKILLABLE for a pid-namespace init with no handler.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sigtop.names import Result, errno_name, signame
from sigtop.timefmt import age_text, clock_s
from sigtop.wire import Disposition, ProcInfo

if TYPE_CHECKING:
    from collections import Counter

    from sigtop.registry import ProcessRegistry


class FlowRow(Protocol):
    """What an explanation reads of a flow (sigtop.tables.flows.FlowRow is one)."""

    key: Any  # FlowRowKey: target_pid, target_gen, sig, ns_of, pidfd
    results: list[int]
    errors: Counter[int]
    fates: bool
    pending: int
    pending_since: float
    discarded: int
    suppressed: int
    suppressed_by: int

    @property
    def failed(self) -> int: ...


# Signals whose default action is to do nothing (sig_kernel_ignore), to stop, or to dump core.
DEFAULT_IGNORE = frozenset({signal.SIGCONT, signal.SIGCHLD, signal.SIGWINCH, signal.SIGURG})
DEFAULT_STOP = frozenset({signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
DEFAULT_CORE = frozenset(
    {
        signal.SIGQUIT,
        signal.SIGILL,
        signal.SIGTRAP,
        signal.SIGABRT,
        signal.SIGBUS,
        signal.SIGFPE,
        signal.SIGSEGV,
        signal.SIGXCPU,
        signal.SIGXFSZ,
        signal.SIGSYS,
    }
)
UNCATCHABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})


def default_action(sig: int) -> str:
    if sig in DEFAULT_IGNORE:
        return "ignore"
    if sig in DEFAULT_STOP:
        return "stop"
    if sig in DEFAULT_CORE:
        return "terminate and dump core"
    return "terminate"


def _bit(mask: int, sig: int) -> bool:
    return 0 < sig <= 64 and bool(mask >> (sig - 1) & 1)


def disposition_of(d: Disposition | None, sig: int) -> str:
    """'handled', 'ignored (SIG_IGN)', 'default (terminate)', or '' when not known."""
    if d is None or sig <= 0:
        return ""
    if _bit(d.caught, sig):
        return "handled"
    if _bit(d.ignored, sig):
        return "ignored (SIG_IGN)"
    return f"default ({default_action(sig)})"


def namespace_init(proc: ProcInfo | None, pid: int) -> str:
    """'' or what makes the target an init the kernel protects (SIGNAL_UNKILLABLE)."""
    if pid == 1:
        return "the host's init"
    if proc is not None and len(proc.nspid) > 1 and proc.nspid[-1] == 1:
        return "pid 1 of its pid namespace (a container's init)"
    return ""


@dataclass(frozen=True)
class Reason:
    short: str  # for the REASON column: "" when every signal took effect
    lines: list[str]  # the whole story, for the drill-down and the JSON


def explain(
    row: FlowRow,
    target: Disposition | None,
    proc: ProcInfo | None,
    now: float,
    set_at: tuple[float, int] | None = None,
) -> Reason:
    """Why the row's signals did not (all) take effect, most pressing first. set_at: when the target
    last set its disposition of the signal, and to what (0 default, 1 ignore, else a handler), if seen."""
    k = row.key
    sig = k.sig
    found: list[tuple[str, str]] = []  # (short, whole)
    blocked_all = target is not None and _bit(target.blocked_by_all(), sig)
    if row.fates and row.pending:
        held = f"{age_text(now - row.pending_since)}" if row.pending_since else ""
        if blocked_all:
            found.append(
                (
                    f"blocked (pending {held})",
                    f"blocked by every thread of the target: {row.pending:,} pending for {held}",
                )
            )
        elif target is not None:
            found.append(
                (
                    f"pending {held}",
                    f"{row.pending:,} pending for {held} though not blocked by every thread (stopped, or not yet run?)",
                )
            )
        else:
            found.append((f"pending {held}", f"{row.pending:,} pending for {held}"))
    if row.fates and row.suppressed:
        found.append(
            (
                f"suppressed by tracer {row.suppressed_by}",
                f"suppressed: {row.suppressed:,} taken in a ptrace signal-delivery-stop and never delivered: tracer "
                f"{row.suppressed_by} resumed the target without them (a debugger told not to pass it: gdb's"
                " `handle SIG nopass`)",
            )
        )
    if row.fates and row.discarded:
        found.append(
            ("discarded at exit", f"discarded: the target exited with {row.discarded:,} still pending (never taken)")
        )
    ignored = row.results[Result.ignored]
    if ignored:
        init = namespace_init(proc, k.target_pid)
        now_is = disposition_of(target, sig)
        if target is not None and target.exited:
            found.append(
                (
                    "target had exited",
                    f"ignored ({ignored:,}): the target had exited and was not yet reaped by its parent (a zombie); "
                    "the kernel ignores every signal to a process that is exiting",
                )
            )
        elif init and sig not in UNCATCHABLE and (now_is.startswith("default") or not now_is):
            found.append(
                (
                    "ns init: dropped" if "namespace" in init else "init: dropped",
                    f"dropped ({ignored:,}): the target is {init}; the kernel drops signals it has no handler for "
                    "(SIGNAL_UNKILLABLE): install a handler or use an init that forwards them (tini, --init)",
                )
            )
        elif now_is == "ignored (SIG_IGN)":
            when = f" at {clock_s(set_at[0])}" if set_at is not None and set_at[1] == 1 else ""
            found.append(
                ("ignored: SIG_IGN", f"ignored ({ignored:,}): the target set SIG_IGN for {signame(sig)}{when}")
            )
        elif sig in DEFAULT_IGNORE and now_is.startswith("default"):
            found.append(
                (
                    "ignored: default",
                    f"ignored ({ignored:,}): the default action of {signame(sig)} is to do nothing",
                )
            )
        else:
            found.append(
                (
                    "ignored",
                    f"ignored ({ignored:,}) by the target's disposition at the time (now: {now_is or 'unknown'})",
                )
            )
    lost = row.results[Result.overflow_fail]
    if lost:
        found.append(
            ("rt queue full", f"lost ({lost:,}): the target's realtime signal queue was full (RLIMIT_SIGPENDING)")
        )
    merged = row.results[Result.already_pending]
    if merged and blocked_all:
        # The common story behind a merge: the target blocks the signal, one is already pending
        # (from this sender or another), and every later one is merged into it.
        found.append(
            (
                "blocked (one pending)",
                f"merged ({merged:,}): every thread of the target blocks {signame(sig)}, one is already "
                "pending and the rest merge into it; standard signals do not queue",
            )
        )
    elif merged:
        found.append(
            (
                "merged",
                f"merged ({merged:,}): a {signame(sig)} was already pending; standard signals do not queue",
            )
        )
    if row.failed:
        errors = ", ".join(f"{errno_name(e)} {n:,} times" for e, n in sorted(row.errors.items()))
        found.append(
            (f"failed: {errno_name(min(row.errors, key=lambda e: -row.errors[e]))}", f"the send failed: {errors}")
        )
    return Reason(found[0][0] if found else "", [whole for _short, whole in found])


def explain_row(registry: ProcessRegistry, row: FlowRow, now: float) -> Reason:
    """explain() with what the registry knows of the row's target."""
    k = row.key
    if k.target_pid <= 0 or k.ns_of or k.pidfd >= 0:
        return explain(row, None, None, now)
    return explain(
        row,
        registry.dispositions.get(k.target_pid),
        registry.proc_of(k.target_pid, k.target_gen),
        now,
        registry.disposition_changes.get((k.target_pid, k.sig)),
    )


def target_disposition(registry: ProcessRegistry, row: FlowRow) -> dict[str, object] | None:
    """How the row's target treats its signal now (JSON and drill-down), None when not known."""
    k = row.key
    d = registry.dispositions.get(k.target_pid) if k.target_pid > 0 and not k.ns_of else None
    if d is None or k.sig <= 0:
        return None
    blocking = [tid for tid, blocked in d.threads if _bit(blocked, k.sig)]
    return {
        "action": disposition_of(d, k.sig),
        "blocked_by": blocking,
        "threads": len(d.threads),
        "pending_now": _bit(d.pending, k.sig),
        "as_of": round(d.ts, 3) if d.ts else None,  # when /proc was read: the target may be gone since
    }


def signalfd_health(mask: int, target: Disposition | None) -> dict[int, list[int]]:
    """Signals of a signalfd's mask that some thread does not block, with those threads: the
    kernel gives such a signal to that thread's handler or default action, not to the fd."""
    if target is None:
        return {}
    problems = {}
    for sig in range(1, 65):
        if _bit(mask, sig) and sig not in UNCATCHABLE:
            threads = target.unblocked_threads(sig)
            if threads:
                problems[sig] = threads
    return problems
