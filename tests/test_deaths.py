"""Who killed it: deaths of real processes, each with its cause."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from sigtop.report import to_json

pytestmark = pytest.mark.bpf

NO_CORE = "import resource\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"


@pytest.fixture
def needs_btf(tracer):
    if not tracer.raw_generate:
        pytest.skip("deaths come from the raw signal_generate's siginfo (kernels with BTF)")


def death_of(model, pid: int):
    (death,) = [d for d in model.deaths if d.pid == pid]
    return death


def test_killed_by_a_sibling_names_the_sibling(needs_btf, measure, spawn):
    victim, killer = spawn(), spawn()

    def work():
        assert killer.ask(f"kill {victim.pid} SIGKILL 1") == "ok"
        victim.proc.wait(timeout=10)

    model = measure(work)
    death = death_of(model, victim.pid)
    assert (death.sig, death.core, death.sender_pid) == (signal.SIGKILL, False, killer.pid)
    assert death.cause.startswith(f"{killer.pid} python")
    assert death.cause.endswith("via kill")
    assert death.lifetime_s is not None
    assert 0 < death.lifetime_s < 60
    (doc,) = [d for d in to_json(model)["deaths"] if d["pid"] == victim.pid]
    assert (doc["signame"], doc["sender_pid"]) == ("SIGKILL", killer.pid)


def test_sigterm_then_sigkill_is_a_stop_timeout(needs_btf, measure, spawn):
    victim, killer = spawn(), spawn()
    victim.ask("ignore SIGTERM")

    def work():
        assert killer.ask(f"kill {victim.pid} SIGTERM 1") == "ok"
        assert killer.ask(f"kill {victim.pid} SIGKILL 1") == "ok"
        victim.proc.wait(timeout=10)

    model = measure(work)
    assert death_of(model, victim.pid).cause.endswith("via kill, after SIGTERM (stop timeout)")


@pytest.mark.parametrize(
    ("code", "sig", "cause"),
    [
        ("import ctypes\nctypes.string_at(0)", signal.SIGSEGV, "fault (SEGV_MAPERR)"),
        ("import os\nos.abort()", signal.SIGABRT, "itself (abort)"),
    ],
)
def test_a_fault_and_an_abort(needs_btf, measure, code, sig, cause):
    pids: list[int] = []

    def work():
        proc = subprocess.Popen([sys.executable, "-c", NO_CORE + code], process_group=0)
        pids.append(proc.pid)
        assert proc.wait(timeout=30) == -sig

    model = measure(work)
    death = death_of(model, pids[0])
    assert (death.sig, death.cause) == (sig, cause)


def run_until_exit(pid: int) -> subprocess.Popen:
    from tests.test_cli import SIGTOP

    tracer = subprocess.Popen(
        [*SIGTOP, "batch", "--json", "--until-exit", str(pid), "--interval", "0.2", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert tracer.stderr.readline().startswith("Tracing")
    return tracer


def test_until_exit_says_who_killed_it(bpf_ready, spawn):
    import json

    from sigtop.live import loader

    try:
        loader.task_offsets()
    except Exception:
        pytest.skip("deaths need the raw signal_generate (a kernel with BTF)")
    victim, killer = spawn(), spawn()
    tracer = run_until_exit(victim.pid)
    try:
        assert killer.ask(f"kill {victim.pid} SIGKILL 1") == "ok"
        out, err = tracer.communicate(timeout=30)  # ends by itself once the victim is gone
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    assert tracer.returncode == 3, err  # a signal killed it
    ended = json.loads(out)["exit"]
    assert (ended["ended"], ended["signame"], ended["sender_pid"]) == ("killed", "SIGKILL", killer.pid)
    assert ended["cause"].startswith(f"{killer.pid} python")


def test_until_exit_of_a_normal_exit(bpf_ready, spawn):
    import json

    child = spawn()
    tracer = run_until_exit(child.pid)
    try:
        child.proc.stdin.write(b"exit\n")
        child.proc.stdin.flush()
        out, err = tracer.communicate(timeout=30)
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    assert tracer.returncode == 0, err
    assert json.loads(out)["exit"] == {"pid": child.pid, "ended": "exited"}
