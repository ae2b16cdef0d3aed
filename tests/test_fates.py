"""Each queued signal followed to its end, against real signals sent to children the tests started.

"delivered" (TRACE_SIGNAL_DELIVERED) means queued: these check that every
queued signal ends up, exactly once, as taken (a handler or the default
action), read (sigwait, a signalfd), discarded (pending when the target
exited) or still pending, and that the flow that queued it is the one
credited. Needs BTF (the raw signal_generate and the task's pending lists).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sigtop.export.report import to_json
from sigtop.model import FlowRow, SignalModel
from sigtop.names import Result
from tests.conftest import NO_BTF, collect_until, own_config, read_line

pytestmark = pytest.mark.bpf

libc = ctypes.CDLL(None, use_errno=True)
SYS_rt_sigqueueinfo = 129
SI_QUEUE = -1


@pytest.fixture(scope="module")
def fates_tracer(bpf_ready: None) -> Iterator[object]:
    """A tracer of this run's own processes, on this kernel's BTF (fates need it: see
    test_without_btf_fates_say_they_are_not_followed for the other way)."""
    from sigtop.live.collector import BpfSource

    source = BpfSource(own_config(details=True))
    source.attach()
    assert source.raw_generate, "this kernel has BTF: the raw signal_generate must load"
    try:
        yield source
    finally:
        source.detach()


@pytest.fixture
def follow(fates_tracer: object) -> Callable[..., SignalModel]:
    """Run a workload, then collect until `settled(model)` holds: the fates of signals settled
    in user space take a collection or two. Fails with what it saw if they never settle."""

    def run(workload: Callable[[], None], settled: Callable[[SignalModel], bool]) -> SignalModel:
        fates_tracer.read_events()  # type: ignore[attr-defined]
        fates_tracer.collect()  # type: ignore[attr-defined]  # forget what came before
        workload()
        return collect_until(fates_tracer, settled, timeout_s=15.0)

    return run


def row_to(model: SignalModel, target: int, sig: int, via: str = "kill") -> FlowRow:
    rows = [
        r
        for r in model.flows.values()
        if r.key.target_pid == target and r.key.sig == sig and r.key.via == via and r.key.sender_pid == os.getpid()
    ]
    assert len(rows) == 1, [r.key for r in rows]
    return rows[0]


def fates(row: FlowRow) -> dict[str, int]:
    return {
        "queued": row.queued,
        "taken": row.taken,
        "read": row.read,
        "discarded": row.discarded,
        "pending": row.pending,
        "untracked": row.untracked,
    }


def test_handled_signals_are_taken_and_timed(follow, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")

    def work():
        for _ in range(25):
            os.kill(child.pid, signal.SIGUSR1)
            child.wait_ack()

    model = follow(work, lambda m: any(r.key.target_pid == child.pid and r.taken == 25 for r in m.flows.values()))
    row = row_to(model, child.pid, signal.SIGUSR1)
    assert fates(row) == {"queued": 25, "taken": 25, "read": 0, "discarded": 0, "pending": 0, "untracked": 0}
    assert row.latency is not None
    assert row.latency.count == 25  # every take, timed in the kernel
    assert 0 < row.latency.quantile(0.5) <= row.latency.quantile(0.99) <= row.latency.max_ns < 5 * 10**9


def test_a_blocked_signal_is_pending_then_discarded_at_exit(follow, spawn):
    child = spawn()
    child.ask("block SIGTERM")
    child.ask("block SIGHUP")
    sent = time.time()

    def work():
        for _ in range(3):  # one queued, two merged into it
            os.kill(child.pid, signal.SIGTERM)

    model = follow(work, lambda m: any(r.key.target_pid == child.pid and r.pending for r in m.flows.values()))
    row = row_to(model, child.pid, signal.SIGTERM)
    assert fates(row) == {"queued": 1, "taken": 0, "read": 0, "discarded": 0, "pending": 1, "untracked": 0}
    assert sent - 0.05 <= row.pending_since <= time.time()
    doc = to_json(model)
    flow = next(f for f in doc["flows"] if f["target_pid"] == child.pid)
    assert (flow["results"]["delivered"], flow["queued"], flow["pending"], flow["taken"]) == (1, 1, 1, 0)

    def exit_with_it_pending():
        os.kill(child.pid, signal.SIGHUP)  # blocked too: both are on the list at exit
        child.proc.stdin.write(b"exit\n")
        child.proc.wait(timeout=10)

    model = follow(
        exit_with_it_pending, lambda m: any(r.key.target_pid == child.pid and r.discarded for r in m.flows.values())
    )
    hup = row_to(model, child.pid, signal.SIGHUP)
    assert fates(hup) == {"queued": 1, "taken": 0, "read": 0, "discarded": 1, "pending": 0, "untracked": 0}


def test_the_signal_that_kills_is_taken_by_its_default_action(follow):
    victims = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:

        def work():
            os.kill(victims[0].pid, signal.SIGTERM)
            os.kill(victims[1].pid, signal.SIGKILL)
            for v in victims:
                v.wait(timeout=10)

        pids = {v.pid for v in victims}
        model = follow(work, lambda m: sum(r.taken for r in m.flows.values() if r.key.target_pid in pids) >= 2)
    finally:
        for v in victims:
            if v.poll() is None:
                v.kill()
                v.wait()
    for victim, sig in zip(victims, (signal.SIGTERM, signal.SIGKILL), strict=True):
        row = row_to(model, victim.pid, sig)
        assert fates(row) == {"queued": 1, "taken": 1, "read": 0, "discarded": 0, "pending": 0, "untracked": 0}


def test_sigwait_and_signalfd_reads_are_read_not_pending(follow, spawn):
    waiter = spawn()
    waiter.ask("block SIGUSR2")
    reader = spawn()
    reader.ask("block SIGURG")
    fd = int(reader.ask("signalfd4 -1 0 SIGURG"))

    def work():
        waiter.proc.stdin.write(b"sigwait SIGUSR2\n")
        reader.proc.stdin.write(f"readfd {fd}\n".encode())
        # The signals may come before the calls wait: both stay pending until they do.
        os.kill(waiter.pid, signal.SIGUSR2)
        os.kill(reader.pid, signal.SIGURG)
        assert read_line(waiter.proc.stdout).strip() == str(int(signal.SIGUSR2))
        assert read_line(reader.proc.stdout).strip() == str(int(signal.SIGURG))

    pids = {waiter.pid, reader.pid}
    model = follow(work, lambda m: sum(r.read for r in m.flows.values() if r.key.target_pid in pids) >= 2)
    waited = row_to(model, waiter.pid, signal.SIGUSR2)
    assert fates(waited) == {"queued": 1, "taken": 0, "read": 1, "discarded": 0, "pending": 0, "untracked": 0}
    assert waited.latency is not None
    assert waited.latency.count == 1  # a sigwait is timed at its return
    via_fd = row_to(model, reader.pid, signal.SIGURG)
    assert fates(via_fd) == {"queued": 1, "taken": 0, "read": 1, "discarded": 0, "pending": 0, "untracked": 0}


def test_realtime_signals_queue_and_each_flow_gets_its_own(follow, spawn):
    """Realtime signals queue in order; two flows interleaved on one queue are each credited exactly."""
    child = spawn()
    rt = signal.SIGRTMIN
    child.ask("handle SIGRTMIN")
    child.ask("block SIGRTMIN")

    def work():
        for i in range(7):  # interleaved: kill (SI_USER) and sigqueue (SI_QUEUE) are two flows
            if i % 2:
                os.kill(child.pid, rt)
            else:
                info = (ctypes.c_int * 32)(rt, 0, SI_QUEUE, 0, os.getpid(), os.getuid())
                assert libc.syscall(SYS_rt_sigqueueinfo, child.pid, rt, ctypes.byref(info)) == 0
        child.ask("unblock SIGRTMIN")  # all seven are taken now (Python's handler runs may coalesce)

    model = follow(work, lambda m: sum(r.taken for r in m.flows.values() if r.key.target_pid == child.pid) >= 7)
    by_kill = row_to(model, child.pid, rt, "kill")
    by_queue = row_to(model, child.pid, rt, "rt_sigqueueinfo")
    assert fates(by_kill) == {"queued": 3, "taken": 3, "read": 0, "discarded": 0, "pending": 0, "untracked": 0}
    assert fates(by_queue) == {"queued": 4, "taken": 4, "read": 0, "discarded": 0, "pending": 0, "untracked": 0}
    assert by_queue.latency is not None
    assert by_queue.latency.count == 4


def test_a_thread_directed_signal_is_followed_on_the_threads_own_list(follow, spawn):
    """tgkill queues on the thread's own list; a blocked one is discarded when that thread ends."""
    child = spawn()
    child.ask("block SIGUSR1")  # the thread inherits the mask
    tid = int(child.ask("thread"))

    def work():
        assert libc.syscall(234, child.pid, tid, signal.SIGUSR1) == 0  # tgkill
        child.ask("endthread")

    model = follow(work, lambda m: any(r.key.target_pid == child.pid and r.discarded for r in m.flows.values()))
    rows = [r for r in model.flows.values() if r.key.sender_pid == os.getpid() and r.key.via == "tgkill"]
    assert len(rows) == 1
    assert fates(rows[0]) == {"queued": 1, "taken": 0, "read": 0, "discarded": 1, "pending": 0, "untracked": 0}
    assert model.stats.pending_full == model.stats.exits_full == 0


def test_no_fate_is_counted_twice_under_a_storm(follow, spawn):
    """Thousands of handled signals from several senders: taken + pending == queued, exactly."""
    child = spawn()
    child.ask("handle SIGUSR1")
    senders = [spawn() for _ in range(3)]

    def work():
        for s in senders:
            s.proc.stdin.write(f"kill {child.pid} SIGUSR1 2000\n".encode())
        for s in senders:
            assert read_line(s.proc.stdout).strip() == "ok"

    twice: list[str] = []  # batches in which a signal was both settled and still pending

    def settled(m: SignalModel) -> bool:
        rows = [r for r in m.flows.values() if r.key.target_pid == child.pid]
        for r in rows:
            if r.taken + r.read + r.discarded + r.pending > r.queued:
                twice.append(f"{r.key.sender_pid}: queued {r.queued} taken {r.taken} pending {r.pending}")
        return sum(r.count for r in rows) == 6000 and all(r.taken == r.queued for r in rows)

    model = follow(work, settled)
    assert twice == []
    handled = model.sigreturns[child.pid].handler_deliveries  # the kernel's (Python's handler runs coalesce)
    rows = [r for r in model.flows.values() if r.key.target_pid == child.pid]
    assert {r.key.sender_pid for r in rows} == {s.pid for s in senders}
    queued = sum(r.queued for r in rows)
    taken = sum(r.taken for r in rows)
    assert sum(r.count for r in rows) == 6000
    assert taken == handled  # every handler run was credited to the flow that queued its signal
    assert taken + sum(r.pending for r in rows) == queued
    assert sum(r.untracked + r.read + r.discarded for r in rows) == 0
    assert model.stats.taken_unqueued == 0


# ---- reasons (#11.2): why signals did not take effect, from the kernel's results and /proc ----


def reason_of(model: SignalModel, row: FlowRow):
    from sigtop.reasons import explain_row

    return explain_row(model.registry, row, time.time())


def test_signals_to_a_zombie_say_the_target_had_exited(follow):
    """A process that exited and is not yet reaped (our child, not waited for) has every signal
    ignored by the kernel: the reason says it had exited, not that its disposition ignored it (#18.6)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)

        def work():
            for _ in range(3):
                os.kill(child.pid, signal.SIGUSR1)  # ours: a zombie, not reaped until the test ends

        def settled(m: SignalModel) -> bool:
            rows = [r for r in m.flows.values() if r.key.target_pid == child.pid and r.key.sig == signal.SIGUSR1]
            return bool(rows) and rows[0].results[Result.ignored] == 3 and child.pid in m.registry.dispositions

        model = follow(work, settled)
    finally:
        child.wait()
    reason = reason_of(model, row_to(model, child.pid, signal.SIGUSR1))
    assert reason.short == "target had exited"
    assert reason.lines[0].startswith("ignored (3): the target had exited and was not yet reaped by its parent")


def test_an_ignoring_target_and_a_blocking_one_get_their_reason(follow, spawn):
    ignoring = spawn()
    blocking = spawn()
    second = spawn()  # another sender of SIGTERM to the blocked target: merged into the pending one
    blocking.ask("block SIGTERM")

    def work():
        ignoring.ask("ignore SIGUSR2")  # seen (rt_sigaction): the reason says since when
        for _ in range(3):
            os.kill(ignoring.pid, signal.SIGUSR2)
        os.kill(blocking.pid, signal.SIGTERM)
        second.ask(f"kill {blocking.pid} SIGTERM 2")

    def settled(m: SignalModel) -> bool:
        pending = any(r.key.target_pid == blocking.pid and r.pending for r in m.flows.values())
        merged = any(r.key.sender_pid == second.pid and r.count == 2 for r in m.flows.values())
        return pending and merged and {ignoring.pid, blocking.pid} <= set(m.registry.dispositions)

    model = follow(work, settled)
    ignored = reason_of(model, row_to(model, ignoring.pid, signal.SIGUSR2))
    assert ignored.short == "ignored: SIG_IGN"
    (line,) = ignored.lines
    assert line.startswith("ignored (3): the target set SIG_IGN for SIGUSR2 at ")
    assert model.registry.disposition_changes[(ignoring.pid, signal.SIGUSR2)][1] == 1  # SIG_IGN
    blocked = reason_of(model, row_to(model, blocking.pid, signal.SIGTERM))
    assert blocked.short.startswith("blocked (pending ")
    assert blocked.lines[0].startswith("blocked by every thread of the target: 1 pending for ")
    # The second sender's two were merged into that pending one: the reason says why, not just "merged".
    (merged_row,) = [
        r for r in model.flows.values() if (r.key.sender_pid, r.key.target_pid) == (second.pid, blocking.pid)
    ]
    assert merged_row.results[Result.already_pending] == 2
    assert merged_row.pending == 0
    merged = reason_of(model, merged_row)
    assert merged.short == "blocked (one pending)"
    assert merged.lines == [
        "merged (2): every thread of the target blocks SIGTERM, one is already pending and "
        "the rest merge into it; standard signals do not queue"
    ]
    doc = to_json(model)
    flow = next(f for f in doc["flows"] if f["target_pid"] == blocking.pid and f["sender_pid"] == os.getpid())
    assert flow["reason"] == blocked.short
    assert flow["target_disposition"] == {
        "action": "default (terminate)",
        "blocked_by": [blocking.pid],
        "threads": 1,
        "pending_now": True,
        "as_of": flow["target_disposition"]["as_of"],
    }
    assert time.time() - 10 < flow["target_disposition"]["as_of"] <= time.time()
    ok = next(f for f in doc["flows"] if f["target_pid"] == ignoring.pid)
    assert ok["target_disposition"]["action"] == "ignored (SIG_IGN)"


NS_SLEEPER = "import os, sys; os.execvp('sleep', ['sleep', '60'])"


def test_a_pid_namespace_init_drops_sigterm_it_has_no_handler_for(follow):
    """The classic `docker stop` hang: pid 1 of a container ignores SIGTERM unless it handles it."""
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "60"], process_group=0)
    try:
        init = first_child(outer.pid)

        def work():
            for _ in range(2):
                os.kill(init, signal.SIGTERM)  # our own grandchild: pid 1 of the namespace we made

        model = follow(work, lambda m: any(r.key.target_pid == init for r in m.flows.values()))
        row = row_to(model, init, signal.SIGTERM)
        assert row.results[1] == 2  # IGNORED: the kernel dropped both
        reason = reason_of(model, row)
        assert reason.short == "ns init: dropped"
        assert "pid 1 of its pid namespace" in reason.lines[0]
        assert model.procs[init].nspid == [init, 1]
    finally:
        outer.kill()  # unshare, then its init (SIGKILL from outside the namespace is never dropped)
        outer.wait(timeout=10)
        if init:
            with contextlib.suppress(ProcessLookupError):
                os.kill(init, signal.SIGKILL)


def test_a_signalfd_whose_signal_is_not_blocked_is_flagged(follow, spawn):
    child = spawn()
    child.ask("block SIGUSR1")
    made: dict[str, int] = {}

    def work():
        made["fd"] = int(child.ask("signalfd4 -1 0 SIGUSR1,SIGURG"))  # SIGURG in the mask, not blocked
        made["tid"] = int(child.ask("thread"))  # a second thread: it inherits the mask (SIGUSR1 blocked)

    model = follow(work, lambda m: child.pid in m.registry.dispositions and (child.pid, made["fd"]) in m.signalfds)
    fd, tid = made["fd"], made["tid"]
    from sigtop.reasons import signalfd_health

    row = model.signalfds[(child.pid, fd)]
    assert signalfd_health(row.mask, model.registry.dispositions[child.pid]) == {signal.SIGURG: [child.pid, tid]}
    doc = to_json(model)
    entry = next(s for s in doc["signalfd"] if s["pid"] == child.pid and s["fd"] == fd)
    assert entry["unblocked"] == {"SIGURG": [child.pid, tid]}
    child.ask("endthread")


def test_signals_to_sigtop_itself_are_not_counted_as_probes(bpf_ready, spawn):
    """Signals to sigtop are left out (exclude_self); the sender's syscall exit must not then
    count them as sig-0 probes (it did: a SIGINT to `sigtop record` showed as a 0-count flow)."""
    from sigtop.live.collector import BpfSource

    sender = spawn()
    source = BpfSource(own_config(sender.pid, exclude_self=True, details=False))
    source.attach()
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # this process is the target: it ignores them
    try:
        source.collect()
        assert sender.ask(f"kill {os.getpid()} SIGUSR2 5") == "ok"
        model = collect_until(source, None)
    finally:
        signal.signal(signal.SIGUSR2, previous)
        source.detach()
    assert not [r for r in model.flows.values() if r.key.sender_pid == sender.pid]


def test_a_signal_filter_does_not_make_handler_returns_look_forged(bpf_ready, spawn):
    """With `-s TERM`, a SIGUSR1 handler's rt_sigreturn must still match its frame: rt_sigreturn
    names no signal, so filtering the delivery out made each return an 'unmatched' (an SROP alert)."""
    from sigtop.live.collector import BpfSource

    child = spawn()
    child.ask("handle SIGUSR1")
    source = BpfSource(own_config(child.pid, signals=(signal.SIGTERM,)))
    source.attach()
    try:
        source.read_events()
        source.collect()
        for _ in range(5):
            os.kill(child.pid, signal.SIGUSR1)
            child.wait_ack()
        model = collect_until(source, None)
    finally:
        source.detach()
    row = model.sigreturns[child.pid]
    assert (row.sigreturns, row.handler_deliveries, row.unmatched) == (5, 5, 0)
    assert not model.alerts
    assert not [r for r in model.flows.values() if r.key.target_pid == child.pid]  # SIGUSR1 is filtered out


def first_child(pid: int, timeout_s: float = 10.0) -> int:
    """The first child of one of our processes (unshare's init), once it has one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError(f"{pid} started no child within {timeout_s} s")


def test_without_btf_fates_say_they_are_not_followed(bpf_ready, spawn):
    """On a kernel without BTF (detection pointed at nothing) the program loads without fates:
    the counts are exact, and every fate field says it is not known (null, '-'), never 0."""
    from sigtop.live.collector import BpfSource
    from sigtop.tables import TABLES
    from sigtop.tables.base import View

    child = spawn()
    child.ask("block SIGTERM")
    source = BpfSource(own_config(child.pid, vmlinux=NO_BTF))
    source.attach()
    try:
        assert not source.raw_generate
        source.collect()
        os.kill(child.pid, signal.SIGTERM)
        model = collect_until(source, lambda m: any(r.key.target_pid == child.pid for r in m.flows.values()))
    finally:
        source.detach()
    row = row_to(model, child.pid, signal.SIGTERM)
    assert (row.count, row.queued, row.fates) == (1, 1, False)
    doc = next(f for f in to_json(model)["flows"] if f["target_pid"] == child.pid)
    assert [doc[k] for k in ("taken", "read", "discarded", "pending", "latency_ns")] == [None] * 5
    assert TABLES["flows"].column("pending").cell(row, View(model)).plain == "-"


def test_a_healthy_signalfd_readers_signals_are_never_left_pending(fates_tracer, spawn):
    """A reader that blocks SIGURG and reads each from its signalfd at once: at the first
    collection after the reads every one is read, none pending (before: pending until the
    collection after, so a steady reader always showed PEND 1, "blocked, pending 0s")."""
    reader = spawn()
    reader.ask("block SIGURG")
    fd = int(reader.ask("signalfd4 -1 0 SIGURG"))
    fates_tracer.read_events()
    fates_tracer.collect()
    for _ in range(5):
        reader.proc.stdin.write(f"readfd {fd}\n".encode())
        reader.proc.stdin.flush()
        os.kill(reader.pid, signal.SIGURG)
        assert read_line(reader.proc.stdout).strip() == str(int(signal.SIGURG))
    model = collect_until(fates_tracer, None)  # one collection
    row = row_to(model, reader.pid, signal.SIGURG)
    assert fates(row) == {"queued": 5, "taken": 0, "read": 5, "discarded": 0, "pending": 0, "untracked": 0}
    assert model.stats.taken_unqueued == 0


PTRACER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_CONT, PTRACE_ATTACH = 7, 16
WALL = 0x40000000
pid = int(sys.argv[1])
assert libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0, ctypes.get_errno()
os.waitpid(pid, WALL)  # the attach's SIGSTOP
assert libc.ptrace(PTRACE_CONT, pid, None, None) == 0, ctypes.get_errno()
print("attached", flush=True)
for line in sys.stdin:  # "next": wait for the tracee's next signal-delivery-stop
    _, status = os.waitpid(pid, WALL)
    assert os.WIFSTOPPED(status), status
    print(f"stopped {os.WSTOPSIG(status)}", flush=True)
    passed = sys.stdin.readline().strip() == "pass"  # else "drop": resumed without it
    assert libc.ptrace(PTRACE_CONT, pid, None, os.WSTOPSIG(status) if passed else 0) == 0, ctypes.get_errno()
    print("resumed", flush=True)
"""

TRACEE = (
    "import signal, time; signal.signal(signal.SIGUSR1, lambda *_: None); print('ready', flush=True); time.sleep(120)"
)


def test_a_signal_its_tracer_does_not_pass_on_is_suppressed_not_read(fates_tracer):
    """A traced process takes a signal off its list into a signal-delivery-stop; its tracer resumes
    it with the signal (delivered: taken) or without (suppressed by that tracer, never "read").
    While the tracer holds it, collections keep it pending: the tracer may still pass it on (#18.3)."""
    tracee = subprocess.Popen([sys.executable, "-c", TRACEE], stdout=subprocess.PIPE, text=True)
    assert read_line(tracee.stdout).strip() == "ready"
    runner = subprocess.Popen(
        [sys.executable, "-c", PTRACER, str(tracee.pid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def tell(line: str) -> str:
        runner.stdin.write(line + "\n")
        runner.stdin.flush()
        return read_line(runner.stdout).strip()

    try:
        assert read_line(runner.stdout).strip() == "attached"
        fates_tracer.read_events()
        fates_tracer.collect()  # forget what came before
        model = SignalModel()
        for verdict in ("drop", "pass", "drop", "pass", "drop"):
            os.kill(tracee.pid, signal.SIGUSR1)
            assert tell("next") == f"stopped {signal.SIGUSR1}"
            for _ in range(3):  # held in the tracer's stop, off the list: not settled as anything yet
                collect_until(fates_tracer, None, model=model)
                time.sleep(0.01)
            assert row_to(model, tracee.pid, signal.SIGUSR1).read == 0, verdict
            assert tell(verdict) == "resumed"

        def settled(m: SignalModel) -> bool:
            rows = [r for r in m.flows.values() if r.key.target_pid == tracee.pid and r.key.sig == signal.SIGUSR1]
            return bool(rows) and rows[0].taken + rows[0].suppressed == 5

        model = collect_until(fates_tracer, settled, timeout_s=15.0, model=model)
    finally:
        for child in (runner, tracee):
            child.kill()  # ours
            child.wait()
    row = row_to(model, tracee.pid, signal.SIGUSR1)
    assert fates(row) == {"queued": 5, "taken": 2, "read": 0, "discarded": 0, "pending": 0, "untracked": 0}
    assert (row.suppressed, row.suppressed_by) == (3, runner.pid)
    flow = next(f for f in to_json(model)["flows"] if f["target_pid"] == tracee.pid and f["signame"] == "SIGUSR1")
    assert (flow["suppressed"], flow["suppressed_by"]) == (3, runner.pid)
    assert any(f"tracer {runner.pid} resumed the target without" in r for r in flow["reasons"]), flow["reasons"]


EXEC_FROM_A_THREAD = """
import os, signal, sys, threading
KEPT, DROPPED = {kept}, {dropped}
signal.pthread_sigmask(signal.SIG_BLOCK, {{KEPT, DROPPED}})  # the leader holds both
go = threading.Event()

def execer():
    print(threading.get_native_id(), flush=True)
    go.wait()
    os.execv(sys.executable, [sys.executable, "-c", AFTER])  # from this thread: de_thread

AFTER = '''
import signal, sys
got = []
signal.signal({kept}, lambda *_: got.append(1))
print("exec'd", sorted(int(s) for s in signal.sigpending()), flush=True)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {{{kept}}})
print("took", len(got), flush=True)
sys.stdin.readline()
'''
thread = threading.Thread(target=execer)
thread.start()
sys.stdin.readline()
go.set()
thread.join()
"""


@pytest.mark.parametrize(
    ("kept", "dropped", "copies"),
    [(signal.SIGUSR1, signal.SIGUSR2, 1), (signal.SIGRTMIN + 1, signal.SIGRTMIN + 2, 3)],
    ids=["standard", "realtime-queue"],
)
def test_signals_pending_across_an_exec_from_a_thread_follow_the_new_leader(fates_tracer, kept, dropped, copies):
    """exec from a thread that is not the leader (de_thread): a signal pending on that thread is
    kept and taken by the new image, under the leader's id (taken, not discarded nor unqueued);
    one pending on the old leader goes with it (discarded, not read) (#18.5). A realtime signal
    queues each copy: every one is followed across, in its order."""
    script = EXEC_FROM_A_THREAD.format(kept=int(kept), dropped=int(dropped))
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        execer = int(read_line(child.stdout))
        fates_tracer.read_events()
        fates_tracer.collect()  # forget what came before
        model = SignalModel()
        SYS_tgkill = 234
        for _ in range(copies):
            assert libc.syscall(SYS_tgkill, child.pid, execer, kept) == 0  # on the exec'ing thread
            assert libc.syscall(SYS_tgkill, child.pid, child.pid, dropped) == 0  # on the old leader
        collect_until(fates_tracer, None, model=model)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert read_line(child.stdout).strip() == f"exec'd [{int(kept)}]"  # kept across the exec
        # Python runs a handler once for copies taken back to back: the kernel's count is sigtop's to give.
        took = read_line(child.stdout).split()
        assert took[0] == "took"
        assert 1 <= int(took[1]) <= copies

        def flow(m: SignalModel, sig: int) -> FlowRow | None:
            rows = [r for r in m.flows.values() if r.key.target_pid in (child.pid, execer) and r.key.sig == sig]
            return rows[0] if len(rows) == 1 else None

        def settled(m: SignalModel) -> bool:
            one, two = flow(m, kept), flow(m, dropped)
            return bool(
                one and two and one.taken + one.read + one.discarded == copies and two.discarded + two.read == copies
            )

        model = collect_until(fates_tracer, settled, timeout_s=15.0, model=model)
    finally:
        child.kill()  # ours
        child.wait()
    one, two = flow(model, kept), flow(model, dropped)
    # Taken matched to its queueing (an unqueued take would leave taken 0 and the record discarded).
    assert (one.queued, one.taken, one.read, one.discarded, one.pending) == (copies, copies, 0, 0, 0)
    assert (two.queued, two.taken, two.read, two.discarded, two.pending) == (copies, 0, 0, copies, 0)
    assert model.stats.taken_unqueued == 0


TWO_TAKERS = """
import signal, sys, threading
signal.signal(signal.SIGUSR1, lambda *_: None)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # every thread starts blocking it
go = threading.Event()

def taker():
    go.wait()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    while True:  # busy on its CPU: a process-directed signal is taken by whichever runs
        pass

for _ in range(2):
    threading.Thread(target=taker, daemon=True).start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
sys.stdin.readline()
"""


def test_latency_max_is_the_slowest_take_while_two_cpus_take_the_same_flow(fates_tracer):
    """One flow's signals taken by two threads on both CPUs at once, the first after 0.3 s blocked,
    the rest at once: the flow's max is that slow one's, whatever the others wrote after it (the
    program's compare-and-swap), it lies in the highest non-empty bucket, and no mean exceeds it
    (issue #23: "latency max is exact")."""
    from sigtop.wire import latency_bucket_bounds

    child = subprocess.Popen(
        [sys.executable, "-c", TWO_TAKERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert read_line(child.stdout).strip() == "ready"
        fates_tracer.read_events()
        fates_tracer.collect()  # forget what came before
        os.kill(child.pid, signal.SIGUSR1)  # pending on the process's list: every thread blocks it
        time.sleep(0.3)
        child.stdin.write("go\n")
        child.stdin.flush()

        def storm() -> None:  # paced, so that most are queued and taken, not merged into one pending
            for _ in range(800):
                os.kill(child.pid, signal.SIGUSR1)
                time.sleep(0.0002)

        senders = [threading.Thread(target=storm) for _ in range(2)]
        for s in senders:
            s.start()
        for s in senders:
            s.join()

        def settled(m: SignalModel) -> bool:
            rows = [r for r in m.flows.values() if r.key.target_pid == child.pid and r.key.sig == signal.SIGUSR1]
            return len(rows) == 1 and rows[0].queued > 1 and rows[0].taken == rows[0].queued

        model = collect_until(fates_tracer, settled, timeout_s=15.0)
    finally:
        child.kill()  # ours
        child.wait()
    row = row_to(model, child.pid, signal.SIGUSR1)
    latency = row.latency
    assert latency is not None
    assert latency.count == row.taken > 100
    assert latency.max_ns >= 300_000_000  # the one held 0.3 s, never overwritten by a faster take
    top = max(i for i, n in enumerate(latency.buckets) if n)
    low, high = latency_bucket_bounds(top)
    assert low <= latency.max_ns < high or (top == len(latency.buckets) - 1 and latency.max_ns >= low)
    assert latency.sum_ns <= latency.max_ns * latency.count
