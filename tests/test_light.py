"""--light: no syscall tracepoint at all, against real signals sent to children the tests started.

Every successful send is named with its syscall and arguments (read from the sender's saved
registers at signal_generate) and counted exactly, with its fate; what only a syscall's own
tracepoint shows (failed sends, sig-0 probes, signalfd, rt_sigreturn) is unseen, and the report
says so instead of showing zeros.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from sigtop.export.report import to_json
from sigtop.model import SignalModel
from sigtop.names import LIGHT_UNSEEN, EventKind, Result, Syscall
from tests.conftest import collect_until, own_config, read_line
from tests.test_bpf import (
    SELF_QUEUE_STORM,
    SI_QUEUE,
    SI_TKILL,
    TIMER_CHILD,
    TRACER,
    SYS_rt_sigqueueinfo,
    SYS_rt_tgsigqueueinfo,
    SYS_tgkill,
    SYS_tkill,
    flows_between,
    siginfo,
    syscall,
)

pytestmark = pytest.mark.bpf


@pytest.fixture(scope="module")
def light(bpf_ready: None) -> Iterator[object]:
    from sigtop.live.collector import BpfSource

    source = BpfSource(own_config(details=True, light=True))
    source.attach()
    try:
        yield source
    finally:
        source.detach()


@pytest.fixture
def measure_light(light: object) -> Callable[..., SignalModel]:
    def run(workload: Callable[[], None], until: Callable | None = None, timeout_s: float = 10.0) -> SignalModel:
        light.read_events()  # type: ignore[attr-defined]
        light.collect()  # type: ignore[attr-defined]  # forget what came before
        workload()
        return collect_until(light, until, timeout_s)  # type: ignore[return-value]

    return run


def test_no_syscall_tracepoint_is_attached(light):
    """The point of --light: not one syscall of any process takes the traced path for sigtop."""
    attached = [*light.bpf.tracepoint_fds, *(name.decode() for name in light.bpf.funcs)]
    assert [name for name in attached if "sys_" in name or name.startswith("syscalls")] == [], attached
    assert "signal/signal_deliver" in light.bpf.tracepoint_fds
    assert b"raw_tracepoint__signal_generate" in light.bpf.funcs


def test_every_send_syscall_is_named_with_exact_counts_and_fates(measure_light, spawn):
    child = spawn()
    for sig in ("SIGUSR1", "SIGUSR2", "SIGRTMIN", "SIGHUP"):
        child.ask(f"handle {sig}")
    pidfd = os.pidfd_open(child.pid)
    sent = {"kill": 5, "tkill": 3, "tgkill": 4, "rt_sigqueueinfo": 2, "rt_tgsigqueueinfo": 3, "pidfd_send_signal": 6}

    def work():
        for _ in range(sent["kill"]):
            os.kill(child.pid, signal.SIGUSR1)
            child.wait_ack()
        for _ in range(sent["tkill"]):
            syscall(SYS_tkill, child.pid, signal.SIGUSR2)
            child.wait_ack()
        for _ in range(sent["tgkill"]):
            syscall(SYS_tgkill, child.pid, child.pid, signal.SIGUSR2)
            child.wait_ack()
        for i in range(sent["rt_sigqueueinfo"]):
            info = siginfo(signal.SIGRTMIN, 0xC0FFEE + i)
            syscall(SYS_rt_sigqueueinfo, child.pid, signal.SIGRTMIN, ctypes.byref(info))
            child.wait_ack()
        for _ in range(sent["rt_tgsigqueueinfo"]):
            info = siginfo(signal.SIGRTMIN, 42)
            syscall(SYS_rt_tgsigqueueinfo, child.pid, child.pid, signal.SIGRTMIN, ctypes.byref(info))
            child.wait_ack()
        for _ in range(sent["pidfd_send_signal"]):
            signal.pidfd_send_signal(pidfd, signal.SIGHUP)
            child.wait_ack()

    try:
        model = measure_light(
            work, until=lambda m: sum(r.taken for r in flows_between(m, os.getpid(), child.pid)) == 23
        )
    finally:
        os.close(pidfd)
    rows = {r.key.via: r for r in flows_between(model, os.getpid(), child.pid)}
    assert {via: r.count for via, r in rows.items()} == sent
    assert all(r.results[Result.delivered] == r.count for r in rows.values())
    assert all(r.taken == r.count for r in rows.values()), {via: (r.count, r.taken) for via, r in rows.items()}
    assert rows["kill"].syscall == Syscall.kill
    assert rows["kill"].codes == {0: 5}
    assert rows["tgkill"].codes == {SI_TKILL: 4}
    assert rows["rt_sigqueueinfo"].codes == {SI_QUEUE: 2}
    # The arguments, from the registers: the siginfo's value and the pids asked for.
    queued = [e for e in rows["rt_sigqueueinfo"].events if e.kind == EventKind.generate]
    assert sorted(e.info_value for e in queued) == [0xC0FFEE, 0xC0FFEE + 1]
    assert all((e.info_pid, e.has_info) == (os.getpid(), True) for e in queued)
    assert {e.arg_pid for e in rows["rt_tgsigqueueinfo"].events} == {child.pid}
    assert {(e.arg_pid, e.arg_tid) for e in rows["tgkill"].events} == {(child.pid, child.pid)}


def test_what_light_cannot_see_is_said_never_shown_as_none(measure_light, spawn):
    """A failed send and a sig-0 probe generate no signal: unseen. The report says the mode and
    what it misses, and the signalfd and sigreturn tables are null with why, not empty."""
    child = spawn()
    child.ask("handle SIGUSR1")
    missing = int(open("/proc/sys/kernel/pid_max").read()) + 32345  # no process can have it

    def work():
        with pytest.raises(ProcessLookupError):
            os.kill(missing, signal.SIGTERM)
        os.kill(child.pid, 0)
        os.kill(child.pid, signal.SIGUSR1)
        child.wait_ack()

    model = measure_light(work)
    assert [(r.key.sig, r.count) for r in model.flows.values() if r.key.sender_pid == os.getpid()] == [
        (signal.SIGUSR1, 1)
    ]
    doc = json.loads(json.dumps(to_json(model)))
    assert (doc["mode"], doc["unseen"]) == ("light", list(LIGHT_UNSEEN))
    assert doc["signalfd"] is None
    assert doc["sigreturn"] is None
    assert set(doc["unavailable"]) == {"signalfd", "sigreturn"}
    assert "--light" in doc["unavailable"]["signalfd"]


def test_a_timer_signal_inside_anothers_send_is_still_the_kernels(measure_light):
    """The registers say "inside rt_sigqueueinfo(SIGALRM)" for whatever a timer interrupts: the
    signal is the sender's only when it is also the target the call asked for (#18.1, light)."""
    fired = 1_000
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

    model = measure_light(work)
    timer_pid = runs.pop("timer")
    to_timer = [r for r in model.flows.values() if r.key.target_pid == timer_pid and r.key.sig == signal.SIGALRM]
    seen = f"to the timer {[(r.key, r.count) for r in to_timer]}, sent {runs}, stats {model.stats}"
    assert {(r.key.sender_pid, r.key.via) for r in to_timer} == {(0, "timer")}, seen
    counted = sum(r.count for r in to_timer)
    assert fired - model.program_misses["signal_generate"] <= counted + model.stats.taken_unqueued <= fired, seen
    for pid, sent in runs.items():
        own = [r for r in model.flows.values() if r.key.sender_pid == int(pid) and r.key.sig == signal.SIGALRM]
        assert [(r.key.target_pid, r.key.via, r.count) for r in own] == [(int(pid), "rt_sigqueueinfo", sent)], seen


def test_a_ptrace_attach_stop_is_the_tracers(measure_light):
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

        model = measure_light(work)
    finally:
        for child in (runner, tracee):
            child.kill()  # ours
            child.wait()
    stops = [r for r in model.flows.values() if r.key.target_pid == tracee.pid and r.key.sig == signal.SIGSTOP]
    assert [(r.key.sender_pid, r.key.via, r.count) for r in stops] == [(runner.pid, "ptrace", 1)]


def test_light_is_refused_where_it_cannot_be(bpf_ready, tmp_path):
    """Without BTF the registers cannot be found: one line, exit 2, no traceback. A recording was
    traced already: --light with --from is refused the same way."""
    from sigtop.live.collector import BpfSource
    from sigtop.live.preflight import CollectorError

    with pytest.raises(CollectorError, match="--light needs the kernel's BTF"):
        BpfSource(own_config(light=True, vmlinux="/nonexistent/btf/vmlinux")).attach()
    recording = tmp_path / "r.jsonl"
    recording.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "sigtop", "batch", "--light", "--from", str(recording), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1
    assert "--light" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_light_trace_says_so_through_a_recording_and_the_exporter(light, spawn):
    """A recording of a light trace replays as light (its JSON says what was unseen), and the
    exporter's sigtop_trace_info says mode light: no consumer reads its zeros as "none"."""
    from prometheus_client import CollectorRegistry, generate_latest

    from sigtop.codec import batch_from_json, batch_json
    from sigtop.export.prometheus import SignalMetrics

    child = spawn()
    child.ask("handle SIGUSR1")
    light.read_events()
    light.collect()
    os.kill(child.pid, signal.SIGUSR1)
    child.wait_ack()
    light.read_events()
    batch = light.collect()
    replayed = batch_from_json(json.loads(json.dumps(batch_json(batch))))
    model = SignalModel()
    model.apply(replayed)
    doc = to_json(model)
    assert (doc["mode"], doc["sigreturn"]) == ("light", None)
    assert [r.count for r in flows_between(model, os.getpid(), child.pid)] == [1]
    metrics, registry = SignalMetrics(), CollectorRegistry()
    registry.register(metrics)
    metrics.apply(replayed)
    assert 'sigtop_trace_info{mode="light"} 1.0' in generate_latest(registry).decode()
    full = SignalMetrics()
    full.apply(batch_from_json(json.loads(json.dumps(batch_json(batch))) | {"light": None}))
    registry = CollectorRegistry()
    registry.register(full)
    assert 'sigtop_trace_info{mode="full"} 1.0' in generate_latest(registry).decode()


def test_a_blocked_signal_on_a_threads_own_list_is_discarded_when_the_thread_ends(measure_light, spawn):
    """Full mode reads a thread's own list at sys_enter_exit (this kernel has emptied it by
    sched_process_exit); --light attaches neither, and must still settle it."""
    from tests.test_fates import fates

    child = spawn()
    child.ask("block SIGUSR1")  # the thread inherits the mask
    tid = int(child.ask("thread"))

    def work():
        assert syscall(SYS_tgkill, child.pid, tid, signal.SIGUSR1) == 0
        child.ask("endthread")

    model = measure_light(work, lambda m: any(r.key.target_pid == child.pid and r.discarded for r in m.flows.values()))
    rows = [r for r in model.flows.values() if r.key.sender_pid == os.getpid() and r.key.via == "tgkill"]
    assert len(rows) == 1
    assert fates(rows[0]) == {"queued": 1, "taken": 0, "read": 0, "discarded": 1, "pending": 0, "untracked": 0}
