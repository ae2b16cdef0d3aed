"""The kernel path, against real signals sent to children the tests started.

Every count is exact: the BPF maps must account for each signal once.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigtop.export.report import to_json
from sigtop.model import EVENTS_PER_ROW, FlowRow, SignalModel
from sigtop.names import EventKind, Result, Syscall
from tests.conftest import MODES, as_nobody, collect_until, own_config, read_line

pytestmark = pytest.mark.bpf

libc = ctypes.CDLL(None, use_errno=True)
SYS_tkill, SYS_tgkill, SYS_rt_sigqueueinfo, SYS_rt_tgsigqueueinfo = 200, 234, 129, 297
SI_QUEUE, SI_TKILL = -1, -6


class SigInfo(ctypes.Structure):
    # x86_64 siginfo_t, the rt (sigqueue) layout, padded to 128 bytes
    _fields_ = [
        ("signo", ctypes.c_int),
        ("errno", ctypes.c_int),
        ("code", ctypes.c_int),
        ("pad0", ctypes.c_int),
        ("pid", ctypes.c_int),
        ("uid", ctypes.c_uint),
        ("value", ctypes.c_uint64),
        ("rest", ctypes.c_byte * 96),
    ]


def siginfo(sig: int, value: int) -> SigInfo:
    return SigInfo(signo=sig, code=SI_QUEUE, pid=os.getpid(), uid=os.getuid(), value=value)


def syscall(*args: object) -> int:
    ret = libc.syscall(*args)
    assert ret == 0, os.strerror(ctypes.get_errno())
    return ret


def flows_between(model: SignalModel, sender: int, target: int) -> list[FlowRow]:
    return [r for r in model.flows.values() if r.key.sender_pid == sender and r.key.target_pid == target]


def only_flow(model: SignalModel, sender: int, target: int) -> FlowRow:
    rows = flows_between(model, sender, target)
    assert len(rows) == 1, [r.key for r in rows]
    return rows[0]


def test_kill_handled_counts_and_sigreturns(measure, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")

    def work():
        for _ in range(25):
            os.kill(child.pid, signal.SIGUSR1)
            child.wait_ack()

    model = measure(work)
    row = only_flow(model, os.getpid(), child.pid)
    assert (row.key.sig, row.key.via, row.syscall) == (signal.SIGUSR1, "kill", Syscall.kill)
    assert row.count == 25
    assert row.results[Result.delivered] == 25
    assert row.codes == {0: 25}  # SI_USER
    handled = int(child.ask("count SIGUSR1"))
    assert handled == 25
    ret = model.sigreturns[child.pid]
    assert ret.sigreturns == handled
    assert ret.handler_deliveries == handled
    assert ret.balance == 0
    assert ret.unmatched == 0
    # every generate was matched to its delivery
    generated = [e for e in row.events if e.kind == EventKind.generate]
    assert len(generated) == 25
    # each matched to its own delivery: a real, positive time, and a handler runs within seconds
    assert all(e.latency_ns is not None and 0 < e.latency_ns < 5 * 10**9 for e in generated)
    assert all(e.taken_tid == child.pid for e in generated)


def test_ignored_and_merged_results(measure, spawn):
    child = spawn()
    child.ask("ignore SIGUSR2")
    child.ask("block SIGTERM")

    def work():
        for _ in range(7):
            os.kill(child.pid, signal.SIGUSR2)
        for _ in range(3):
            os.kill(child.pid, signal.SIGTERM)  # blocked: the 2nd and 3rd merge into the pending one

    model = measure(work)
    rows = {r.key.sig: r for r in flows_between(model, os.getpid(), child.pid)}
    assert rows[signal.SIGUSR2].results[Result.ignored] == 7
    assert rows[signal.SIGUSR2].count == 7
    assert rows[signal.SIGTERM].results[Result.delivered] == 1
    assert rows[signal.SIGTERM].results[Result.already_pending] == 2


def test_tkill_and_tgkill(measure, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")

    def work():
        for _ in range(3):
            syscall(SYS_tkill, child.pid, signal.SIGUSR1)
            child.wait_ack()
        for _ in range(4):
            syscall(SYS_tgkill, child.pid, child.pid, signal.SIGUSR1)
            child.wait_ack()

    model = measure(work)
    rows = {r.key.via: r for r in flows_between(model, os.getpid(), child.pid)}
    assert set(rows) == {"tkill", "tgkill"}
    assert rows["tkill"].count == 3
    assert rows["tgkill"].count == 4
    assert rows["tgkill"].codes == {SI_TKILL: 4}
    assert model.sigreturns[child.pid].sigreturns == 7


def test_sigqueueinfo_carries_si_value(measure, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")
    child.ask("handle SIGUSR2")

    def work():
        info = siginfo(signal.SIGUSR1, 0xC0FFEE)
        syscall(SYS_rt_sigqueueinfo, child.pid, signal.SIGUSR1, ctypes.byref(info))
        child.wait_ack()
        info = siginfo(signal.SIGUSR2, 42)
        syscall(SYS_rt_tgsigqueueinfo, child.pid, child.pid, signal.SIGUSR2, ctypes.byref(info))
        child.wait_ack()

    model = measure(work)
    rows = {r.key.via: r for r in flows_between(model, os.getpid(), child.pid)}
    assert rows["rt_sigqueueinfo"].count == 1
    assert rows["rt_sigqueueinfo"].codes == {SI_QUEUE: 1}
    assert rows["rt_tgsigqueueinfo"].count == 1
    (event,) = rows["rt_sigqueueinfo"].events
    assert (event.info_value, event.info_pid, event.has_info) == (0xC0FFEE, os.getpid(), True)
    (event,) = rows["rt_tgsigqueueinfo"].events
    assert event.info_value == 42
    assert event.arg_pid == child.pid


def test_pidfd_send_signal_resolves_target(measure, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")
    pidfd = os.pidfd_open(child.pid)
    try:

        def work():
            for _ in range(5):
                signal.pidfd_send_signal(pidfd, signal.SIGUSR1)
                child.wait_ack()

        model = measure(work)
    finally:
        os.close(pidfd)
    row = only_flow(model, os.getpid(), child.pid)  # the real pid, not the fd
    assert row.key.via == "pidfd_send_signal"
    assert row.count == 5


def test_kill_process_group_gives_one_flow_per_member(measure, spawn):
    leader = spawn()  # a process group of its own
    member = spawn(process_group=leader.pid)
    for child in (leader, member):
        child.ask("ignore SIGUSR2")

    model = measure(lambda: os.killpg(leader.pid, signal.SIGUSR2))
    for child in (leader, member):
        row = only_flow(model, os.getpid(), child.pid)
        assert (row.key.via, row.count, row.results[Result.ignored]) == ("kill", 1, 1)


def test_failed_send_counts_errno_and_keeps_the_asked_pid_in_its_events(measure):
    """A pid that does not exist is the caller's free choice: one row per sender, signal, syscall
    and errno (never one per pid, or a loop of made-up pids fills the map); the detail events
    keep each pid asked for."""
    missing = int(open("/proc/sys/kernel/pid_max").read()) + 12345  # no process can have it

    def work():
        for i in range(3):
            with pytest.raises(ProcessLookupError):
                os.kill(missing + i, signal.SIGTERM)

    model = measure(work)
    row = only_flow(model, os.getpid(), 0)
    assert row.count == 0
    assert row.failed == 3
    assert dict(row.errors) == {3: 3}  # ESRCH
    assert [e.arg_pid for e in row.events] == [missing, missing + 1, missing + 2]
    (doc,) = [f for f in to_json(model)["flows"] if f["sender_pid"] == os.getpid() and f["errors"]]
    assert doc["asked_pids"] == [missing + 2, missing + 1, missing]


def test_in_plain_batch_a_failed_send_names_its_pids_and_every_flow_its_users(bpf_ready):
    """Without detail events (plain `sigtop batch`), a failed send's asked pids still come (its
    event is sent in every mode), and every flow names its ends' users (#18.7, #18.9)."""
    from sigtop.live.collector import BpfSource

    missing = int(open("/proc/sys/kernel/pid_max").read()) + 22345  # no process can have it
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.readline()"], stdin=subprocess.PIPE)
    source = BpfSource(own_config(child.pid, details=False))
    source.attach()
    try:
        source.read_events()
        source.collect()
        for i in range(3):
            with pytest.raises(ProcessLookupError):
                os.kill(missing + i, signal.SIGTERM)
        os.kill(child.pid, 0)
        os.kill(child.pid, signal.SIGCONT)  # ours; continues nothing, counted
        model = collect_until(source, None)
    finally:
        source.detach()
        child.kill()
        child.wait()
    flows = to_json(model)["flows"]
    (failed,) = [f for f in flows if f["sender_pid"] == os.getpid() and f["errors"]]
    assert failed["asked_pids"] == [missing + 2, missing + 1, missing]
    (cont,) = [f for f in flows if f["sender_pid"] == os.getpid() and f["signame"] == "SIGCONT"]
    me = {"uid": os.getuid(), "name": pwd.getpwuid(os.getuid()).pw_name}
    assert (cont["sender_user"], cont["target_user"], cont["sender_comm_now"]) == (me, me, None)
    assert model.stats.events_lost == 0


def test_a_refused_send_keeps_its_real_target(measure, spawn):
    """EPERM names a process that exists (bounded): who tried to signal it and was refused."""
    victim = spawn()
    attempts: list[int] = []

    def work():
        attacker = subprocess.Popen(
            [*as_nobody(), sys.executable, "-c",
             f"import os\nfor _ in range(4):\n    try: os.kill({victim.pid}, 15)\n    except PermissionError: pass"],
            process_group=0, cwd="/",
        )  # fmt: skip
        attempts.append(attacker.pid)
        assert attacker.wait(timeout=30) == 0

    model = measure(work)
    row = only_flow(model, attempts[0], victim.pid)
    assert (row.count, dict(row.errors)) == (0, {1: 4})  # EPERM, against the real target


def test_sends_of_no_signal_at_all_are_counted_as_one_flow(measure, spawn):
    """kill(pid, 100) and kill(pid, 65) fail with EINVAL before any signal exists: counted (they were not),
    under one key whatever the number, so a caller cannot fill the map by varying it."""
    child = spawn()

    def work():
        for number in (100, 65, 12345, 65, 100):
            with pytest.raises(OSError) as failed:
                os.kill(child.pid, number)
            assert failed.value.errno == errno.EINVAL

    model = measure(work)
    rows = [r for r in model.flows.values() if r.key.sender_pid == os.getpid() and r.failed]
    assert len(rows) == 1, [r.key for r in rows]
    assert (rows[0].key.sig, dict(rows[0].errors), rows[0].count) == (-1, {errno.EINVAL: 5}, 0)
    (doc,) = [f for f in to_json(model)["flows"] if f["sender_pid"] == os.getpid() and f["errors"]]
    assert doc["signame"] == "(invalid)"


def test_signal_zero_is_a_probe(measure, spawn):
    child = spawn()
    model = measure(lambda: os.kill(child.pid, 0))
    row = only_flow(model, os.getpid(), child.pid)
    assert (row.key.sig, row.count, row.results[Result.no_signal]) == (0, 0, 1)


def test_signalfd_masks_flags_and_updates(measure, spawn):
    child = spawn()
    sfd_cloexec, sfd_nonblock = 0o2000000, 0o4000
    fds = {}

    def work():
        fds["a"] = int(child.ask(f"signalfd4 -1 {sfd_cloexec | sfd_nonblock} SIGUSR1,SIGINT"))
        assert fds["a"] >= 0
        # an update: new mask (SIGKILL is ignored by the kernel), flags stay
        assert int(child.ask(f"signalfd4 {fds['a']} 0 SIGUSR1,SIGTERM,SIGKILL")) == fds["a"]
        fds["b"] = int(child.ask("signalfd -1 SIGHUP"))

    model = measure(work)
    a = model.signalfds[(child.pid, fds["a"])]
    assert a.mask == (1 << (signal.SIGUSR1 - 1)) | (1 << (signal.SIGTERM - 1))
    assert a.flags == sfd_cloexec | sfd_nonblock
    assert a.calls == 2
    assert [m for _, m in a.history][-1] == a.mask
    b = model.signalfds[(child.pid, fds["b"])]
    assert (b.mask, b.flags, b.calls) == (1 << (signal.SIGHUP - 1), 0, 1)


def test_sigchld_names_the_child_that_changed_state(measure, spawn):
    """The kernel raises SIGCHLD on the exiting child's own thread: that child is its source."""
    child = spawn()
    model = measure(child.stop)
    rows = [r for r in model.flows.values() if r.key.sig == signal.SIGCHLD and r.key.target_pid == os.getpid()]
    assert len(rows) == 1
    assert rows[0].key.sender_pid == child.pid
    assert rows[0].key.via == "child"
    assert rows[0].count == 1
    assert dict(rows[0].codes) == {2: 1}  # CLD_KILLED
    kill_rows = flows_between(model, os.getpid(), child.pid)
    assert [r.key.sig for r in kill_rows] == [signal.SIGKILL]


def test_storm_counts_stay_exact(measure, spawn):
    """200,000 kill()s: the count is exact; detail events may drop, and drops are counted."""
    child = spawn()
    child.ask("ignore SIGUSR2")
    sent = 200_000
    pid, kill, sig = child.pid, os.kill, signal.SIGUSR2

    def work():
        for _ in range(sent):
            kill(pid, sig)

    model = measure(work)
    row = only_flow(model, os.getpid(), child.pid)
    assert row.count == sent
    assert row.results[Result.ignored] == sent
    # Every detail event is accounted for: each one the kernel could not
    # queue is counted lost, each one queued was decoded or counted skipped.
    assert model.stats.events_sent + model.stats.events_lost >= sent
    assert model.stats.events_sent == model.events_received + model.stats.events_dropped
    assert model.events_received > 0


def test_detail_events_all_arrive_when_read_in_time(tracer, measure, spawn):
    """Read while another process storms, the ring buffer loses nothing: every event decoded.

    The storm runs beside the reader, so the kernel reserves records while
    user space moves the consumer position (a torn store of it once made the
    kernel see the ring full: a few events lost per second).
    """
    child = spawn()
    child.ask("ignore SIGUSR2")
    sent = 100_000  # within one interval's decoding budget (MAX_EVENTS_PER_S)
    storm = (
        "import os, signal, sys\n"
        "pid, n = int(sys.argv[1]), int(sys.argv[2])\n"
        "for _ in range(n):\n"
        "    os.kill(pid, signal.SIGUSR2)\n"
    )

    def work():
        sender = subprocess.Popen([sys.executable, "-c", storm, str(child.pid), str(sent)], process_group=0)
        try:
            while sender.poll() is None:
                tracer.read_events()
                time.sleep(0.002)
        finally:
            sender.kill()  # ours; already gone unless the test failed
            sender.wait()
        assert sender.returncode == 0
        senders.append(sender.pid)

    senders: list[int] = []
    model = measure(work)
    row = only_flow(model, senders[0], child.pid)
    assert row.count == sent
    assert model.stats.events_lost == 0
    assert model.stats.events_dropped == 0
    generated = sum(1 for e in row.events if e.kind == EventKind.generate)
    assert generated == min(sent, EVENTS_PER_ROW)
    assert model.events_received >= sent


def test_events_that_wrap_round_a_small_ring_arrive_whole(bpf_ready, spawn):
    """A ring of one page (30 events), read every few sends: records wrap round its end five
    times, some split across it (sigtop maps the ring's pages once and joins the two ends
    itself). Each event arrives, in order, carrying its own si_value."""
    from sigtop.live.collector import BpfSource

    child = spawn()
    child.ask("ignore SIGUSR2")
    sent = 150
    source = BpfSource(own_config(child.pid, details=True, ringbuf_pages=1))
    source.attach()
    try:
        model = SignalModel()
        source.read_events()
        source.collect()
        for value in range(sent):
            info = siginfo(signal.SIGUSR2, value)
            syscall(SYS_rt_sigqueueinfo, child.pid, signal.SIGUSR2, ctypes.byref(info))
            if value % 5 == 4:
                source.read_events()
        model = collect_until(source, None, model=model)
    finally:
        source.detach()
    row = only_flow(model, os.getpid(), child.pid)
    assert row.count == sent
    assert model.stats.events_lost == 0
    values = [e.info_value for e in row.events if e.kind == EventKind.generate]
    assert values == list(range(sent))


def test_sigreturn_without_a_handler_frame_is_unmatched(measure):
    """SROP's first step, for real: a child of ours calls rt_sigreturn with no signal delivered.

    The kernel restores registers from whatever the stack holds and the
    child dies of SIGSEGV; the rt_sigreturn is counted unmatched, exactly
    once, from the kernel's counter (so batch mode, without events, sees it).
    """
    srop = (
        "import ctypes, resource\n"
        "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
        "ctypes.CDLL(None).syscall(15)\n"  # rt_sigreturn
    )
    children: list[int] = []

    def work():
        child = subprocess.Popen([sys.executable, "-c", srop], process_group=0)
        children.append(child.pid)
        assert child.wait(timeout=30) == -signal.SIGSEGV

    model = measure(work)
    row = model.sigreturns[children[0]]
    assert (row.sigreturns, row.handler_deliveries, row.unmatched) == (1, 0, 1)
    # a bad frame is punished with force_sig(SIGSEGV): si_code SI_KERNEL, not a fault's
    killed = only_flow(model, 0, children[0])
    assert (killed.key.sig, killed.key.via, killed.count) == (signal.SIGSEGV, "kernel", 1)


TIMER_CHILD = """
import os, signal, sys, time
n, interval = int(sys.argv[1]), float(sys.argv[2])
os.sched_setaffinity(0, {0})
handled = 0
def on_alarm(_s, _f):
    global handled
    handled += 1
    if handled < n:  # one-shot, re-armed here: exactly one SIGALRM per arming, none pending at the end
        signal.setitimer(signal.ITIMER_REAL, interval)
signal.signal(signal.SIGALRM, on_alarm)
sys.stdin.readline()
signal.setitimer(signal.ITIMER_REAL, interval)
while handled < n:
    time.sleep(0.0005)
print(handled, flush=True)
"""

STORM_UNTIL_TERM = """
import os, signal, sys
os.sched_setaffinity(0, {0})
target, stop, sent = int(sys.argv[1]), False, 0
def on_term(_s, _f):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
print("go", flush=True)
while not stop:
    os.kill(target, signal.SIGUSR2)
    sent += 1
print(sent, flush=True)
"""


CLASSIC_SILENT_MAX = 2  # see README "Every count is exact": the no-BTF path's measured limit


def test_timer_signals_under_a_send_storm_are_counted_or_reported(tracer, measure, spawn):
    """Timer signals come from interrupt context; one that lands while a tracepoint program
    runs on that CPU (here: sigtop's own sys_enter_kill, for a storm pinned to the same CPU)
    is skipped by the kernel. Every signal is counted, or reported in no count (UNCOUNTED):
    with the raw signal_generate (kernels with BTF) the storm is exact and every timer signal
    is counted or, taken with no record of its queueing, counted as unseen."""
    sink = spawn()
    sink.ask("ignore SIGUSR2")
    fired_timer = 20_000
    runs: dict[str, int] = {}

    def work():
        timer = subprocess.Popen(
            [sys.executable, "-c", TIMER_CHILD, str(fired_timer), "0.00005"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            process_group=0,
        )
        storm = subprocess.Popen(
            [sys.executable, "-c", STORM_UNTIL_TERM, str(sink.pid)], stdout=subprocess.PIPE, text=True, process_group=0
        )
        try:
            assert storm.stdout.readline().strip() == "go"
            timer.stdin.write("go\n")
            timer.stdin.flush()
            assert int(timer.stdout.readline()) == fired_timer
            storm.send_signal(signal.SIGTERM)  # ours
            runs.update(timer=timer.pid, storm=storm.pid, sent=int(storm.stdout.readline()))
        finally:
            for child in (timer, storm):
                child.kill()  # ours; already gone unless the test failed
                child.wait()

    model = measure(work)
    timer_rows = [r for r in model.flows.values() if r.key.target_pid == runs["timer"] and r.key.sig == signal.SIGALRM]
    counted_timer = sum(r.count for r in timer_rows)
    assert {r.key.via for r in timer_rows} == {"timer"}
    assert all(r.key.sender_pid == 0 for r in timer_rows)
    counted_storm = only_flow(model, runs["storm"], sink.pid).count
    missed = model.program_misses["signal_generate"]
    unseen = model.stats.taken_unqueued  # taken, never seen generated (needs fates: BTF)
    seen = (
        f"timer {counted_timer}/{fired_timer}, storm {counted_storm}/{runs['sent']},"
        f" misses {dict(model.program_misses)}, unseen {unseen},"
        f" timer rows {[(r.key, r.count) for r in timer_rows]}, raw {tracer.raw_generate}, stats {model.stats}"
    )
    assert counted_timer <= fired_timer, seen
    assert counted_storm <= runs["sent"], seen
    # Whatever was not counted was reported (missed may also include other processes' signals).
    # The classic tracepoint only (no BTF, so no fates to notice an unseen one): under load, 1 timer
    # signal in 20,000 went neither counted nor reported in 2-3 runs of 10. That limit is stated in
    # the README, and bounded here.
    silent = 0 if tracer.raw_generate else CLASSIC_SILENT_MAX
    assert (fired_timer - counted_timer) + (runs["sent"] - counted_storm) <= missed + unseen + silent, seen
    assert to_json(model)["dropped"]["signals_uncounted"] == missed + unseen
    if tracer.raw_generate:
        # signal_generate fires under siglock, IRQs off: a raw program (guarded only against
        # itself) cannot be interrupted by another signal_generate, and misses nothing. Yet about
        # one timer signal in 20,000-40,000 (busy machine, storm on the same CPU) is taken with
        # no signal_generate run for it and no recursion miss (a counter at the program's entry
        # agreed; cause in the kernel not found): the delivery side notices each one.
        assert (counted_storm, missed) == (runs["sent"], 0), seen
        assert counted_timer + unseen == fired_timer, seen


SELF_QUEUE_STORM = """
import ctypes, os, signal, sys
os.sched_setaffinity(0, {0})
signal.signal(signal.SIGALRM, signal.SIG_IGN)
stop, sent = False, 0
def on_term(_s, _f):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
info = (ctypes.c_int * 32)(signal.SIGALRM, 0, 0x80)  # si_signo, si_errno, si_code SI_KERNEL: to itself, allowed
libc, me = ctypes.CDLL(None, use_errno=True), os.getpid()
print("go", flush=True)
while not stop:
    if libc.syscall(129, me, signal.SIGALRM, info) == 0:  # rt_sigqueueinfo
        sent += 1
print(sent, flush=True)
"""


def test_a_timer_signal_raised_inside_anothers_send_is_the_kernels(tracer, measure):
    """SIGALRM timers fire on the CPU where two processes loop on rt_sigqueueinfo(SIGALRM,
    SI_KERNEL) to themselves: the timer's signals are raised from interrupt context while one of
    them is inside its send, with the signal and si_code it asked for, but not the target it
    asked for. Each is the kernel's timer signal to the timer's process; each send is its
    sender's to itself; every count exact (#18.1)."""
    fired = 2_000
    storms: list[subprocess.Popen] = []
    runs: dict[str, int] = {}

    def work():
        timer = subprocess.Popen(
            [sys.executable, "-c", TIMER_CHILD, str(fired), "0.0002"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, process_group=0,
        )  # fmt: skip
        try:
            for _ in range(2):
                storms.append(
                    subprocess.Popen([sys.executable, "-c", SELF_QUEUE_STORM], stdout=subprocess.PIPE, text=True)
                )
            for storm in storms:
                assert storm.stdout.readline().strip() == "go"
            timer.stdin.write("go\n")
            timer.stdin.flush()
            assert int(timer.stdout.readline()) == fired
            for storm in storms:
                storm.send_signal(signal.SIGTERM)  # ours
                runs[str(storm.pid)] = int(storm.stdout.readline())
            runs["timer"] = timer.pid
        finally:
            for child in (timer, *storms):
                child.kill()  # ours; already gone unless the test failed
                child.wait()

    model = measure(work)
    timer_pid = runs.pop("timer")
    to_timer = [r for r in model.flows.values() if r.key.target_pid == timer_pid and r.key.sig == signal.SIGALRM]
    seen = f"to the timer {[(r.key, r.count) for r in to_timer]}, sent {runs}, stats {model.stats}"
    assert {(r.key.sender_pid, r.key.via) for r in to_timer} == {(0, "timer")}, seen
    unseen = model.stats.taken_unqueued if tracer.raw_generate else 0
    silent = 0 if tracer.raw_generate else CLASSIC_SILENT_MAX
    counted = sum(r.count for r in to_timer)
    assert fired - silent - model.program_misses["signal_generate"] <= counted + unseen <= fired, seen
    for pid, sent in runs.items():
        own = [r for r in model.flows.values() if r.key.sender_pid == int(pid) and r.key.sig == signal.SIGALRM]
        assert [(r.key.target_pid, r.key.via) for r in own] == [(int(pid), "rt_sigqueueinfo")], seen
        assert own[0].count == sent, seen


PIDFD_THREAD = os.O_EXCL  # pidfd_open flag: a pidfd of that thread alone (Linux 6.9)
PIDFD_SIGNAL_THREAD = 1
PIDFD_SELF_THREAD = -10000


def test_thread_directed_pidfd_sends_are_the_senders(tracer, measure, spawn):
    """A thread's pidfd, PIDFD_SIGNAL_THREAD and PIDFD_SELF_THREAD make the kernel use SI_TKILL:
    still the syscall's signal, from this sender, never '[kernel]'."""
    child = spawn()
    child.ask("handle SIGUSR1")
    thread_fd = os.pidfd_open(child.pid, PIDFD_THREAD)
    process_fd = os.pidfd_open(child.pid)
    previous = signal.signal(signal.SIGURG, signal.SIG_IGN)
    try:

        def work():
            for _ in range(3):
                signal.pidfd_send_signal(thread_fd, signal.SIGUSR1)
                child.wait_ack()
            for _ in range(2):
                signal.pidfd_send_signal(process_fd, signal.SIGUSR1, None, PIDFD_SIGNAL_THREAD)
                child.wait_ack()
            signal.pidfd_send_signal(process_fd, signal.SIGUSR1)  # a process pidfd: SI_USER
            child.wait_ack()
            signal.pidfd_send_signal(PIDFD_SELF_THREAD, signal.SIGURG)  # this thread itself, ignored

        model = measure(work)
    finally:
        signal.signal(signal.SIGURG, previous)
        os.close(thread_fd)
        os.close(process_fd)
    row = only_flow(model, os.getpid(), child.pid)
    assert (row.key.via, row.count, dict(row.codes)) == ("pidfd_send_signal", 6, {SI_TKILL: 5, 0: 1})
    assert not [r for r in model.flows.values() if r.key.sender_pid == 0 and r.key.target_pid == child.pid]
    (me,) = [r for r in model.flows.values() if r.key.sig == signal.SIGURG and r.key.target_pid == os.getpid()]
    assert (me.key.sender_pid, me.key.via, me.results[Result.ignored]) == (os.getpid(), "pidfd_send_signal", 1)


def test_a_thread_gone_before_collection_is_still_its_process(tracer, measure, spawn):
    """tkill() to a thread that exits before the collector reads /proc: the row is its process
    (the raw tracepoint names it; without BTF the kernel side remembers whose thread it was)."""
    child = spawn()
    child.ask("ignore SIGUSR2")

    def work():
        tid = int(child.ask("thread"))
        for _ in range(4):
            syscall(SYS_tkill, tid, signal.SIGUSR2)
        assert child.ask("endthread") == "ok"  # joined; the kernel releases the task a moment later
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{child.pid}/task/{tid}"):
            assert time.monotonic() < deadline, "the thread never left /proc"
            time.sleep(0.005)

    model = measure(work)
    row = only_flow(model, os.getpid(), child.pid)
    assert (row.key.via, row.count, row.results[Result.ignored]) == ("tkill", 4, 4)
    assert all(r.key.target_pid == child.pid for r in model.flows.values() if r.key.sender_pid == os.getpid())


@pytest.mark.parametrize("mode", list(MODES))
def test_pid_filter_follows_threads_created_after_attach(bpf_ready, spawn, mode):
    """--pid P: a signal to a thread of P created after attach still counts (filtered by process,
    in the kernel: the raw tracepoint names the process, and either way the kernel adds P's new
    threads to the filter as they are created)."""
    from sigtop.live.collector import BpfSource
    from sigtop.live.config import TraceConfig

    child = spawn()
    child.ask("ignore SIGUSR2")
    other = spawn()
    other.ask("ignore SIGUSR2")
    source = BpfSource(TraceConfig(pids=(child.pid,), details=False, exclude_self=False, **MODES[mode]))
    source.attach()
    try:
        assert source.raw_generate == (mode == "btf")
        source.collect()
        tid = int(child.ask("thread"))
        for _ in range(5):
            syscall(SYS_tkill, tid, signal.SIGUSR2)
        os.kill(other.pid, signal.SIGUSR2)  # not P: filtered out in the kernel
        model = collect_until(source, None)
        child.ask("endthread")
    finally:
        source.detach()
    row = only_flow(model, os.getpid(), child.pid)
    assert (row.key.via, row.count) == ("tkill", 5)
    assert not flows_between(model, os.getpid(), other.pid)


def test_a_forged_siginfo_is_shown_as_spoofed_with_both_identities(measure, spawn):
    """rt_sigqueueinfo lets a caller claim any si_pid/si_uid (here: init's); the flow says so."""
    child = spawn()
    child.ask("handle SIGUSR1")

    def work():
        honest = siginfo(signal.SIGUSR1, 1)
        syscall(SYS_rt_sigqueueinfo, child.pid, signal.SIGUSR1, ctypes.byref(honest))
        child.wait_ack()
        forged = SigInfo(signo=signal.SIGUSR1, code=SI_QUEUE, pid=1, uid=os.getuid(), value=2)
        for _ in range(2):
            syscall(SYS_rt_sigqueueinfo, child.pid, signal.SIGUSR1, ctypes.byref(forged))
            child.wait_ack()

    model = measure(work)
    rows = {r.key.spoofed: r for r in flows_between(model, os.getpid(), child.pid)}
    assert (rows[False].count, rows[True].count) == (1, 2)
    (doc,) = [f for f in to_json(model)["flows"] if f["spoofed"]]
    assert doc["claimed"] == {"si_pid": 1, "si_uid": os.getuid()}
    assert doc["sender_pid"] == os.getpid()
    # An alert too, once (it is raised once a minute per kind and process), naming the real sender.
    (alert,) = [a for a in model.alerts if a.kind == "spoofed"]
    assert alert.pid == os.getpid()
    assert "claims si_pid 1" in alert.detail
    rows[True].events.clear()  # as in batch mode, without detail events: the kernel kept the claim
    (doc,) = [f for f in to_json(model)["flows"] if f["spoofed"]]
    assert doc["claimed"] == {"si_pid": 1, "si_uid": os.getuid()}


def test_the_drill_down_names_the_thread_that_took_the_signal(measure, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")
    tids: list[int] = []

    def work():
        tid = int(child.ask("thread"))
        tids.append(tid)
        for sent in range(1, 4):
            syscall(SYS_tgkill, child.pid, tid, signal.SIGUSR1)
            # Python runs the handler on its main thread, which waits on stdin: asking wakes it.
            deadline = time.monotonic() + 10
            while int(child.ask("count SIGUSR1")) < sent:
                assert time.monotonic() < deadline, "the handler never ran"
                time.sleep(0.01)
        child.ask("endthread")

    model = measure(work)
    row = only_flow(model, os.getpid(), child.pid)
    generated = [e for e in row.events if e.kind == EventKind.generate]
    assert [e.taken_tid for e in generated] == [tids[0]] * 3  # that thread, not the process's main one


def test_a_sender_that_execs_shows_both_names(measure, spawn):
    sink = spawn()
    sink.ask("ignore SIGUSR2")
    shells: list[subprocess.Popen] = []

    def work():
        shell = subprocess.Popen(["sh", "-c", f"kill -USR2 {sink.pid}; exec sleep 5"], process_group=0)
        shells.append(shell)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and open(f"/proc/{shell.pid}/comm").read().strip() != "sleep":
            time.sleep(0.01)

    try:
        model = measure(work)
    finally:
        shells[0].kill()  # ours
        shells[0].wait()
    row = only_flow(model, shells[0].pid, sink.pid)
    assert (row.sender_comm, row.sender_comm_now) == ("sh", "sleep")
    from sigtop.tables import TABLES
    from sigtop.tables.base import View

    assert TABLES["flows"].column("sender_comm").cell(row, View(model)).plain == "sh→sleep"


NS_INIT = """
import os, signal, sys, time
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
assert (os.getpid(), child) == (1, 2), (os.getpid(), child)  # init of a new pid namespace, and its pid 2
for _ in range(3):
    os.kill(2, 0)  # a container's health check of its own pid 2
for _ in range(2):
    try:
        os.kill(99, signal.SIGTERM)
    except ProcessLookupError:
        pass
print("done", flush=True)
sys.stdin.readline()
os.kill(2, signal.SIGKILL)
"""


def test_probes_from_a_pid_namespace_are_that_namespaces_pids(tracer, measure):
    """kill(2, 0) inside a container probes the container's pid 2, not the host's kthreadd (the
    kernel tells a sender in a child pid namespace: from its task's layout with BTF, else by asking
    for its pid in sigtop's own namespace)."""
    outer = subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, "-c", NS_INIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    ids: dict[str, int] = {}

    def work():
        assert read_line(outer.stdout).strip() == "done"
        ids["init"] = int(open(f"/proc/{outer.pid}/task/{outer.pid}/children").read().split()[0])
        ids["two"] = int(open(f"/proc/{ids['init']}/task/{ids['init']}/children").read().split()[0])

    try:
        model = measure(work)
    finally:
        outer.stdin.write("\n")
        outer.stdin.flush()
        outer.wait(timeout=30)
    rows = [r for r in model.flows.values() if r.key.sender_pid == ids["init"]]
    probe = only_flow(model, ids["init"], ids["two"])  # translated to the host pid of its pid 2
    assert (probe.key.sig, probe.results[Result.no_signal]) == (0, 3)
    assert not [r for r in rows if r.key.target_pid == 2]  # never the host's pid 2
    (failed,) = [r for r in rows if r.failed]
    assert dict(failed.errors) == {3: 2}
    assert model.procs[ids["two"]].nspid == [ids["two"], 2]
    doc = next(f for f in to_json(model)["flows"] if f["sender_pid"] == ids["init"] and f["sig"] == 0)
    assert (doc["target_pid"], doc["target_nspid"]) == (ids["two"], [ids["two"], 2])


RT_HOLDER = """
import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})  # they stay queued
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_full_realtime_queue_counts_each_call_once(measure):
    """The 4th..6th rt_sigqueueinfo find the target's queue full (RLIMIT_SIGPENDING 3): each is
    one OVERFLOW_FAIL, not also an EAGAIN failure of the same call."""
    holder = subprocess.Popen(
        [*as_nobody(), "prlimit", "--sigpending=3", sys.executable, "-c", RT_HOLDER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, process_group=0, cwd="/",
    )  # fmt: skip
    try:
        assert read_line(holder.stdout).strip() == "ready"

        def work():
            for i in range(6):
                info = siginfo(signal.SIGRTMIN, i)
                ret = libc.syscall(SYS_rt_sigqueueinfo, holder.pid, signal.SIGRTMIN, ctypes.byref(info))
                assert (ret, ctypes.get_errno() if ret else 0) == ((0, 0) if i < 3 else (-1, 11))  # EAGAIN

        model = measure(work)
    finally:
        holder.kill()  # ours
        holder.wait()
    (row,) = flows_between(model, os.getpid(), holder.pid)
    assert (row.results[Result.delivered], row.results[Result.overflow_fail]) == (3, 3)
    mine = [r for r in model.flows.values() if r.key.sender_pid == os.getpid() and r.key.sig == signal.SIGRTMIN]
    assert sum(r.failed for r in mine) == 0  # not also an EAGAIN row (failed sends have a row of their own)
    assert sum(r.attempts for r in mine) == 6


@pytest.fixture(scope="module")
def sigframes(tmp_path_factory) -> str:
    """tests/helpers/sigframes.c, compiled here (a Python handler runs after the real frame returned)."""
    binary = tmp_path_factory.mktemp("sigframes") / "sigframes"
    source = Path(__file__).parent / "helpers" / "sigframes.c"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(source)], check=True)
    return str(binary)


def test_a_child_forked_inside_a_handler_may_return_from_it(measure, sigframes):
    """No false alarm: the child inherits the handler frame and returns from it once."""
    runs: list[int] = []

    def work():
        proc = subprocess.Popen([sigframes, "fork"], process_group=0)
        runs.append(proc.pid)
        assert proc.wait(timeout=30) == 0

    model = measure(work)
    parent = model.sigreturns[runs[0]]
    (child,) = [r for pid, r in model.sigreturns.items() if pid != runs[0] and r.comm == "sigframes"]
    assert (parent.sigreturns, parent.handler_deliveries, parent.unmatched) == (1, 1, 0)
    assert (child.sigreturns, child.unmatched) == (1, 0)
    assert not [a for a in model.alerts if a.kind == "srop" and a.comm == "sigframes"]  # no false alarm


def test_exec_inside_a_handler_leaves_no_frame_to_forge(measure, sigframes):
    """The handler's frame is gone with the old image: a later bare rt_sigreturn is SROP's first step."""
    runs: list[int] = []

    def work():
        proc = subprocess.Popen([sigframes, "exec"], process_group=0)
        runs.append(proc.pid)
        assert proc.wait(timeout=30) == -signal.SIGSEGV

    model = measure(work)
    row = model.sigreturns[runs[0]]
    assert (row.handler_deliveries, row.sigreturns, row.unmatched) == (1, 1, 1)
    assert [a.kind for a in model.alerts if a.pid == runs[0]] == ["srop"]


TRACER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
pid = int(sys.argv[1])
sys.stdin.readline()
assert libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0, ctypes.get_errno()
os.waitpid(pid, os.WUNTRACED | 0x40000000)  # __WALL: the attach's stop
assert libc.ptrace(PTRACE_DETACH, pid, None, None) == 0, ctypes.get_errno()
print("detached", flush=True)
"""


def test_a_ptrace_attach_stop_is_the_tracers(tracer, measure):
    """PTRACE_ATTACH stops the tracee with a SIGSTOP the kernel raises (SI_KERNEL) inside the
    tracer's ptrace(): the tracer's, VIA ptrace, never "[kernel]" (#18.3)."""
    tracee = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    runner = subprocess.Popen(
        [sys.executable, "-c", TRACER, str(tracee.pid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:

        def work():
            runner.stdin.write("go\n")
            runner.stdin.flush()
            assert read_line(runner.stdout).strip() == "detached"
            assert runner.wait(timeout=10) == 0

        model = measure(work)
    finally:
        for child in (runner, tracee):
            child.kill()  # ours
            child.wait()
    stops = [r for r in model.flows.values() if r.key.target_pid == tracee.pid and r.key.sig == signal.SIGSTOP]
    assert [(r.key.sender_pid, r.key.via, r.count) for r in stops] == [(runner.pid, "ptrace", 1)]


FSIZE_CHILD = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, b"x" * 16)
for _ in range(3):
    try:
        os.write(fd, b"past the limit")
    except OSError as exc:
        assert exc.errno == 27, exc  # EFBIG
print("done", flush=True)
"""


def test_a_file_size_limit_signal_says_rlimit(tracer, measure, tmp_path):
    """A write past RLIMIT_FSIZE makes the kernel send SIGXFSZ (SI_USER, from no send syscall):
    a kernel-raised signal of the class rlimit, not a '[kernel] VIA kernel' with a user's code (#18.10)."""
    target = tmp_path / "limited"
    child = subprocess.Popen([sys.executable, "-c", FSIZE_CHILD, str(target)], stdout=subprocess.PIPE, text=True)

    def work():
        assert read_line(child.stdout).strip() == "done"
        assert child.wait(timeout=10) == 0

    try:
        model = measure(work)
    finally:
        child.kill()  # ours; already gone unless the test failed
        child.wait()
    rows = [r for r in model.flows.values() if r.key.target_pid == child.pid and r.key.sig == signal.SIGXFSZ]
    assert [(r.key.sender_pid, r.key.via, r.count, r.results[Result.ignored]) for r in rows] == [(0, "rlimit", 3, 3)]
