"""Drill-down and help screens. They read the model; they never change it.

Strings a process or a recording chose arrive sanitised by the model
(names.printable) and are only ever appended to rich Text, never parsed as markup.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Sparkline, Static

from sigtop.model import Death, FlowRow, SignalfdRow, SignalModel, SigreturnRow
from sigtop.names import (
    EventKind,
    Result,
    Syscall,
    errno_name,
    pidfd_flag_names,
    sfd_flag_names,
    si_code_name,
    signal_mask_names,
    signame,
)
from sigtop.reasons import explain_row, target_disposition
from sigtop.records import SignalEvent
from sigtop.ui.columns import clock, fates_text, latency_text

MAX_DETAIL_EVENTS = 200
MAX_CMDLINE = 300


def process_text(model: SignalModel, pid: int, label: str, gen: int | None = None) -> Text:
    """A process's /proc details, as plain text (cmdline and comm are the process's own)."""
    text = Text(f"{label}: ", style="bold")
    if pid == 0:
        return text.append("the kernel (no sending process)")
    if pid < 0:
        return text.append(f"process group {-pid}")
    info = model.procs.get(pid) if gen is None else model.proc_of(pid, gen)
    if info is None:
        return text.append(f"pid {pid} (gone before sigtop could read /proc)")
    ns = f"  (pid in its namespaces: {' / '.join(map(str, info.nspid[1:]))})" if len(info.nspid) > 1 else ""
    text.append(f"pid {pid}{ns}  comm {info.comm}  user {info.user or '?'}\n")
    cmdline = info.cmdline
    text.append(f"  cmdline: {cmdline[:MAX_CMDLINE] + '...' if len(cmdline) > MAX_CMDLINE else cmdline or '-'}\n")
    chain = " <- ".join(f"{p} {c}" for p, c in info.parents) or "-"
    text.append(f"  parents: {chain}\n")
    text.append(f"  cgroup:  {info.cgroup or '-'}")
    return text


def syscall_args(e: SignalEvent) -> str:
    sc = Syscall(e.syscall) if e.syscall in Syscall._value2member_map_ else None
    if sc is None or sc == Syscall.kernel:
        return "kernel"
    if sc == Syscall.pdeathsig:
        return "its parent exited (PR_SET_PDEATHSIG)"
    if sc in (Syscall.kill, Syscall.rt_sigqueueinfo):
        args = f"{e.arg_pid}, {signame(e.sig)}"
    elif sc == Syscall.tkill:
        args = f"{e.arg_tid}, {signame(e.sig)}"
    elif sc in (Syscall.tgkill, Syscall.rt_tgsigqueueinfo):
        args = f"{e.arg_pid}, {e.arg_tid}, {signame(e.sig)}"
    elif sc == Syscall.pidfd_send_signal:
        flags = "|".join(pidfd_flag_names(e.flags)) or "0"
        args = f"pidfd {e.arg_pid}, {signame(e.sig)}, {'info' if e.has_info else 'NULL'}, {flags}"
    else:
        args = str(e.arg_pid)
    return f"{sc.name}({args})"


SI_TIMER = -2


def si_value_text(e: SignalEvent) -> str:
    if e.has_info:
        return f"{e.info_value:#x}"
    if e.code == SI_TIMER:  # the kernel fills it from the timer, out of the tracepoint's sight
        return "n/a (timer: not on the tracepoint)"
    return "-"


def result_text(e: SignalEvent) -> str:
    if e.kind == EventKind.send_done:
        return f"failed {errno_name(-e.ret)}" if e.ret < 0 else "no signal (probe)"
    return Result(e.result).name if e.result in Result._value2member_map_ else str(e.result)


class DetailScreen(Screen[None]):
    """Base of the drill-down screens: Esc goes back."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
        Binding("q,f10", "app.quit", "Quit"),
    ]

    def __init__(self, model: SignalModel) -> None:
        super().__init__()
        self.model = model


class FlowDetail(DetailScreen):
    def __init__(self, model: SignalModel, row: FlowRow) -> None:
        super().__init__(model)
        self.row = row

    def compose(self) -> ComposeResult:
        r = self.row
        k = r.key
        head = Text()
        head.append("Flow  ", style="bold")
        head.append(f"{k.sender_pid or 'kernel'} {r.sender_comm} -> ")
        head.append(f"{k.target_pid} {r.target_comm}  ")
        head.append(f"{signame(k.sig)} via {k.via}\n")
        # The kernel's DELIVERED means queued: said so here, as in the table.
        breakdown = "  ".join(
            f"{'queued (delivered)' if res == Result.delivered else res.name} {r.results[res]}"
            for res in Result
            if r.results[res]
        )
        head.append(f"count {r.count}  attempts {r.attempts}  {breakdown}\n")
        if k.spoofed:
            claims = [e for e in r.events if e.has_info]
            claim = f"si_pid {claims[-1].info_pid} si_uid {claims[-1].info_uid}" if claims else "(no detail events)"
            real = self.model.proc_of(k.sender_pid, k.sender_gen)
            head.append(
                f"SPOOFED: the siginfo claims {claim}; really sent by pid {k.sender_pid} "
                f"user {real.user if real else '?'}\n",
                style="bold red",
            )
        codes = ", ".join(f"{si_code_name(k.sig, c)}:{n}" for c, n in r.codes.items())
        head.append(f"si_code: {codes or '-'}   first {clock(r.first_ts)}  last {clock(r.last_ts)}\n")
        now = self.model.last_ts or time.time()
        head.append_text(fates_text(r, now))
        head.append_text(latency_text(r))
        for line in explain_row(self.model, r, now).lines:
            head.append(f"why: {line}\n", style="yellow")
        disposition = target_disposition(self.model, r)
        if disposition is not None:
            blockers = disposition["blocked_by"]
            head.append(
                f"the target's {signame(k.sig)} as of {clock(disposition['as_of'] or 0)}: {disposition['action']}; "
                f"blocked by {len(blockers)} of {disposition['threads']} threads"
                + (f" ({', '.join(map(str, blockers[:8]))})" if blockers else "")
                + ("; pending" if disposition["pending_now"] else "")
                + "\n"
            )
        with VerticalScroll():
            yield Static(head, id="flow-head")
            yield Static(process_text(self.model, k.sender_pid, "sender", k.sender_gen), classes="proc")
            yield Static(process_text(self.model, k.target_pid, "target", k.target_gen), classes="proc")
            yield DataTable(id="events", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#events", DataTable)
        table.add_columns(
            "TIME", "SENDER TID", "TARGET TID", "CALL", "SI_CODE", "SI_VALUE", "RESULT", "LATENCY", "TAKEN BY"
        )
        events = list(self.row.events)[-MAX_DETAIL_EVENTS:]
        for e in reversed(events):
            table.add_row(
                clock(e.ts),
                str(e.sender_tid) if e.syscall else "-",
                str(e.target_pid),
                syscall_args(e),
                si_code_name(e.sig, e.code),
                si_value_text(e),
                result_text(e),
                f"{e.latency_ns / 1000:.1f} us" if e.latency_ns is not None else "-",
                str(e.taken_tid) if e.taken_tid else "-",  # the thread that took it (signal_deliver)
            )
        if not events:
            table.add_row("no detail events for this flow (lost, or captured without details)", *[""] * 8)
        table.focus()


class SignalfdDetail(DetailScreen):
    def __init__(self, model: SignalModel, row: SignalfdRow) -> None:
        super().__init__(model)
        self.row = row

    def compose(self) -> ComposeResult:
        r = self.row
        head = Text()
        head.append("signalfd  ", style="bold")
        head.append(f"pid {r.pid} {r.comm}  fd {r.fd}  flags {' '.join(sfd_flag_names(r.flags)) or '-'}  ")
        head.append(f"calls {r.calls}  created {clock(r.created_ts) if r.created_ts else 'before tracing'}\n")
        head.append(f"mask now: {' '.join(signal_mask_names(r.mask)) or '-'}")
        with VerticalScroll():
            yield Static(head)
            yield Static(process_text(self.model, r.pid, "process"), classes="proc")
            yield DataTable(id="history", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#history", DataTable)
        table.add_columns("TIME", "MASK")
        for ts, mask in reversed(self.row.history):
            table.add_row(clock(ts), " ".join(signal_mask_names(mask)) or "-")
        table.focus()


class SigreturnDetail(DetailScreen):
    def __init__(self, model: SignalModel, row: SigreturnRow) -> None:
        super().__init__(model)
        self.row = row

    def compose(self) -> ComposeResult:
        r = self.row
        head = Text()
        head.append("rt_sigreturn  ", style="bold")
        head.append(f"pid {r.pid} {r.comm}  total {r.sigreturns}  now {r.rate:.1f}/s  ")
        head.append(f"handler deliveries {r.handler_deliveries}  balance {r.balance}\n")
        if r.unmatched:
            head.append(
                f"{r.unmatched} rt_sigreturn with no handler frame outstanding: SROP, "
                "or a handler entered before tracing began (fork and exec are accounted for)",
                style="bold red",
            )
        else:
            head.append("every rt_sigreturn matched a handler delivery")
        with VerticalScroll():
            yield Static(head)
            yield Static("rt_sigreturn per interval (oldest left):")
            yield Sparkline(list(r.history) or [0], id="rate")
            yield Static(process_text(self.model, r.pid, "process"), classes="proc")
            yield DataTable(id="unmatched", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#unmatched", DataTable)
        table.add_columns("TIME", "TID", "COMM", "EVENT")
        for e in reversed(self.row.events):
            table.add_row(clock(e.ts), str(e.sender_tid), Text(e.comm), "unmatched rt_sigreturn")


FILTER_HELP = """\
Filter (/ or F4): pid:1234  comm:nginx  sig:TERM  ctr:docker  (bare words: 1234, TERM, nginx)
  terms of one kind match any; kinds combine with AND. Esc clears.
Results: QUEUED put on a pending list (the kernel's "delivered"), IGN discarded
  (ignored), MERGED already pending (lost merge), LOST realtime queue overflow,
  FAILED the call failed (errno).
Fates of the queued: TAKEN by a handler or the default action, or read (sigwait,
  signalfd); PEND still pending (blocked?); DISC discarded when the target exited.
  P99: generate-to-take latency, every signal timed in the kernel.
VIA: the syscall, or for kernel-raised signals: fault, child, timer, io, pipe, kernel.
Sigreturn BALANCE: handler deliveries minus rt_sigreturns; UNMATCHED: returns with
  no handler frame outstanding (how SROP starts)."""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "app.pop_screen", "Close")]

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self.bindings_help = bindings

    def compose(self) -> ComposeResult:
        text = Text("sigtop keys\n\n", style="bold")
        for keys, description in self.bindings_help:
            text.append(f"  {keys:<16}", style="bold cyan")
            text.append(f"{description}\n")
        text.append("\n" + FILTER_HELP)
        yield Static(text, id="help")


class DeathDetail(DetailScreen):
    """Who killed it, and every signal it received while sigtop watched."""

    def __init__(self, model: SignalModel, row: Death) -> None:
        super().__init__(model)
        self.row = row

    def compose(self) -> ComposeResult:
        d = self.row
        head = Text()
        head.append("Death  ", style="bold")
        head.append(f"pid {d.pid} {d.comm}  {signame(d.sig)}{'  (core dumped)' if d.core else ''}  at {clock(d.ts)}\n")
        head.append("cause: ", style="bold")
        head.append(d.cause)
        with VerticalScroll():
            yield Static(head)
            yield Static(process_text(self.model, d.pid, "process"), classes="proc")
            yield Static("signals it received:")
            yield DataTable(id="received", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#received", DataTable)
        table.add_columns("LAST", "SENDER", "COMM", "SIGNAL", "VIA", "COUNT")
        rows = [r for r in self.model.flows.values() if r.key.target_pid == self.row.pid and r.count]
        for r in sorted(rows, key=lambda r: r.last_ts, reverse=True):
            sender = str(r.key.sender_pid) if r.key.sender_pid else "-"
            who = Text(r.sender_comm) if r.key.sender_pid else Text("[kernel]", style="italic")
            table.add_row(clock(r.last_ts), sender, who, signame(r.key.sig), r.key.via, str(r.count))
        table.focus()


class AlertsScreen(DetailScreen):
    """What looks like an attack, newest first; each stays after its process is gone."""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(f"Alerts ({len(self.model.alerts)}, newest first)", style="bold"))
            yield DataTable(id="alerts", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#alerts", DataTable)
        table.add_columns("TIME", "KIND", "PID", "TID", "COMM", "DETAIL", "CGROUP", "PARENTS")
        for a in reversed(self.model.alerts):
            chain = " <- ".join(f"{p} {c}" for p, c in a.parents[:4]) or "-"
            table.add_row(
                clock(a.ts), a.kind, str(a.pid), str(a.tid or "-"), Text(a.comm), Text(a.detail), Text(a.cgroup or "-"),
                Text(chain),
            )  # fmt: skip
        if not self.model.alerts:
            table.add_row("no alerts", *[""] * 7)
        table.focus()


def detail_screen(model: SignalModel, table: str, row: Any) -> DetailScreen:
    screens = {"flows": FlowDetail, "signalfd": SignalfdDetail, "sigreturn": SigreturnDetail, "deaths": DeathDetail}
    return screens[table](model, row)
