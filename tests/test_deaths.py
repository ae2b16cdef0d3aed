"""Who killed it: deaths of real processes, each with its cause."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigtop.export.report import to_json
from tests.conftest import REQUIRE_BPF, killed_after, read_line

pytestmark = pytest.mark.bpf

NO_CORE = "import resource\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"


def seen_here(tracer, model) -> bool:
    """Whether this tracer sees deaths; where it cannot (no BTF: no SIGCHLD siginfo), the report must
    say so, null and why, never an empty list that reads "nobody died"."""
    if tracer.raw_generate:
        return True
    doc = to_json(model)
    assert doc["deaths"] is None
    assert "BTF" in doc["unavailable"]["deaths"]
    assert not model.deaths
    return False


def death_of(model, pid: int):
    (death,) = [d for d in model.deaths if d.pid == pid]
    return death


def test_killed_by_a_sibling_names_the_sibling(tracer, measure, spawn):
    victim, killer = spawn(), spawn()
    v2 = [line for line in Path(f"/proc/{victim.pid}/cgroup").read_text().splitlines() if line.startswith("0::")]

    def work():
        assert killer.ask(f"kill {victim.pid} SIGKILL 1") == "ok"
        victim.proc.wait(timeout=10)

    model = measure(work)
    if not seen_here(tracer, model):
        return
    death = death_of(model, victim.pid)
    # Its cgroup as the kernel saw it at death (gone from /proc when sigtop looks).
    assert death.cgroup == v2[0].removeprefix("0::")
    assert (death.sig, death.core, death.sender_pid) == (signal.SIGKILL, False, killer.pid)
    assert death.cause.startswith(f"{killer.pid} python")
    assert death.cause.endswith("via kill")
    assert death.lifetime_s is not None
    assert 0 < death.lifetime_s < 60
    (doc,) = [d for d in to_json(model)["deaths"] if d["pid"] == victim.pid]
    assert (doc["signame"], doc["sender_pid"]) == ("SIGKILL", killer.pid)


def test_sigterm_then_sigkill_is_a_stop_timeout(tracer, measure, spawn):
    victim, killer = spawn(), spawn()
    victim.ask("ignore SIGTERM")

    def work():
        assert killer.ask(f"kill {victim.pid} SIGTERM 1") == "ok"
        assert killer.ask(f"kill {victim.pid} SIGKILL 1") == "ok"
        victim.proc.wait(timeout=10)

    model = measure(work)
    if seen_here(tracer, model):
        cause = death_of(model, victim.pid).cause
        assert cause.startswith(f"{killer.pid} python via kill, after SIGTERM (stop timeout); ")
        assert "the SIGTERM did nothing (ignored" in cause, cause  # its SIG_IGN, where /proc was read in time


@pytest.mark.parametrize(
    ("code", "sig", "cause"),
    [
        ("import ctypes\nctypes.string_at(0)", signal.SIGSEGV, "fault (SEGV_MAPERR)"),
        ("import os\nos.abort()", signal.SIGABRT, "itself (abort)"),
    ],
)
def test_a_fault_and_an_abort(tracer, measure, code, sig, cause):
    pids: list[int] = []

    def work():
        proc = subprocess.Popen([sys.executable, "-c", NO_CORE + code], process_group=0)
        pids.append(proc.pid)
        assert proc.wait(timeout=30) == -sig

    model = measure(work)
    if seen_here(tracer, model):
        death = death_of(model, pids[0])
        assert (death.sig, death.cause) == (sig, cause)


def test_a_fatal_signal_to_one_thread_ends_them_all_and_says_so(tracer, measure, spawn):
    """A SIGTERM sent to one thread (tgkill) kills the whole process: the kernel SIGKILLs each of
    its threads. The death counts them, and the SIGTERM, taken by its default action, is taken,
    not discarded with the thread's list."""
    victim, killer = spawn(), spawn()
    tids = [int(victim.ask("thread")) for _ in range(3)]

    def work():
        assert killer.ask(f"tgkill {victim.pid} {tids[1]} SIGTERM") == "ok"
        assert victim.proc.wait(timeout=10) == -signal.SIGTERM

    model = measure(work)
    if not seen_here(tracer, model):
        return
    death = death_of(model, victim.pid)
    assert (death.sig, death.sender_pid, death.threads) == (signal.SIGTERM, killer.pid, 4)
    assert death.cause.endswith("via tgkill")
    (doc,) = [d for d in to_json(model)["deaths"] if d["pid"] == victim.pid]
    assert doc["threads"] == 4
    (row,) = [r for r in model.flows.values() if r.key.target_pid == victim.pid and r.key.sig == signal.SIGTERM]
    if tracer.task_storage:  # fates followed
        assert (row.count, row.taken, row.discarded) == (1, 1, 0)


def test_a_core_dump_signal_in_one_thread_counts_every_thread(tracer, measure):
    """SIGSEGV in one of three threads: that thread takes the signal itself and the kernel
    SIGKILLs the other two (zap_threads): three threads ended."""
    pids: list[int] = []
    code = NO_CORE + (
        "import ctypes, threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "t = threading.Thread(target=lambda: (time.sleep(0.2), ctypes.string_at(0)))\n"
        "t.start(); time.sleep(30)\n"
    )

    def work():
        proc = subprocess.Popen([sys.executable, "-c", code], process_group=0)
        pids.append(proc.pid)
        assert proc.wait(timeout=30) == -signal.SIGSEGV

    model = measure(work)
    if seen_here(tracer, model):
        death = death_of(model, pids[0])
        assert (death.sig, death.threads) == (signal.SIGSEGV, 3)


def test_an_exit_group_or_exec_that_ends_threads_is_no_death_and_leaves_no_count(tracer, measure, spawn):
    """exit_group and exec's de_thread SIGKILL the other threads too. Neither is a death by a
    signal; and the count they leave is not given to the next death of that process id."""
    pids: list[int] = []
    exit_group = "import os, threading, time\nthreading.Thread(target=time.sleep, args=(30,)).start()\nos._exit(0)"
    from_thread = (
        "import os, threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        f"threading.Thread(target=os.execv, args=({sys.executable!r}, ['python3', '-c', "
        "'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'])).start(); time.sleep(30)"
    )

    def work():
        for code, status in ((exit_group, 0), (from_thread, -signal.SIGTERM)):
            proc = subprocess.Popen([sys.executable, "-c", code], process_group=0)
            pids.append(proc.pid)
            assert proc.wait(timeout=30) == status

    model = measure(work)
    if not seen_here(tracer, model):
        return
    assert not [d for d in model.deaths if d.pid == pids[0]]
    # The exec'd image (one thread: de_thread ended the other two) then killed itself.
    death = death_of(model, pids[1])
    assert (death.sig, death.threads, death.cause) == (signal.SIGTERM, 1, "itself (SIGTERM)")


def run_until_exit(pid: int) -> subprocess.Popen:
    from tests.test_cli import SIGTOP

    tracer = subprocess.Popen(
        [*SIGTOP, "batch", "--json", "--until-exit", str(pid), "--interval", "0.2", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert read_line(tracer.stderr).startswith("Tracing")
    return tracer


def test_until_exit_says_who_killed_it(bpf_ready, spawn):
    import json

    victim, killer = spawn(), spawn()
    tracer = run_until_exit(victim.pid)
    with killed_after(tracer):
        assert killer.ask(f"kill {victim.pid} SIGKILL 1") == "ok"
        out, err = tracer.communicate(timeout=30)  # ends by itself once the victim is gone
    assert tracer.returncode == 3, err  # a signal killed it
    ended = json.loads(out)["exit"]
    assert (ended["ended"], ended["signame"], ended["sender_pid"]) == ("killed", "SIGKILL", killer.pid)
    assert ended["cause"].startswith(f"{killer.pid} python")


def test_until_exit_of_a_normal_exit(bpf_ready, spawn):
    import json

    child = spawn()
    tracer = run_until_exit(child.pid)
    with killed_after(tracer):
        child.proc.stdin.write(b"exit\n")
        child.proc.stdin.flush()
        out, err = tracer.communicate(timeout=30)
    assert tracer.returncode == 0, err
    assert json.loads(out)["exit"] == {"pid": child.pid, "ended": "exited"}


ORPHAN = """
import ctypes, os, signal, sys, time
child = os.fork()
if child == 0:
    ctypes.CDLL(None).prctl(1, int(signal.SIGUSR2))  # PR_SET_PDEATHSIG: SIGUSR2 when the parent exits
    os.write(1, b"%d\\n" % os.getpid())
    time.sleep(30)
    os._exit(0)
sys.stdin.readline()  # the test says when to exit
"""


def test_a_parents_death_signal_names_the_parent(tracer, measure):
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, process_group=0
    )
    orphan = int(read_line(parent.stdout))
    try:

        def work():
            parent.stdin.write("\n")
            parent.stdin.flush()
            parent.wait(timeout=10)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{orphan}").exists():  # reaped by init once SIGUSR2 killed it
                assert time.monotonic() < deadline, "the orphan was not killed by its parent's death"
                time.sleep(0.01)

        model = measure(work)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)  # ours (the parent's child), if the test failed before it died
    if not seen_here(tracer, model):
        return
    death = death_of(model, orphan)
    assert (death.sig, death.cause_kind, death.sender_pid) == (signal.SIGUSR2, "parent-death", parent.pid)
    assert death.cause == f"its parent {parent.pid} python exited (PR_SET_PDEATHSIG)"
    row = next(r for r in model.flows.values() if r.key.target_pid == orphan)
    assert (row.key.via, row.key.sender_pid, row.count) == ("pdeathsig", parent.pid, 1)


def v2_cgroup_root() -> Path | None:
    """The cgroup v2 hierarchy (unified, or the whole /sys/fs/cgroup), where cgroup.kill lives."""
    for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.controllers").exists():
            return root
    return None


def test_a_cgroup_kill_names_its_writer(tracer, measure):
    """Writing 1 to a cgroup's cgroup.kill SIGKILLs its members from the writer's write(), with
    SI_USER: each kill is the writer's (VIA cgroup.kill), in the flows and in the deaths, never
    "[kernel]" with a user's si_code (#18.4)."""
    root = v2_cgroup_root()
    if root is None:
        if REQUIRE_BPF:
            pytest.fail("no cgroup v2 hierarchy here")
        pytest.skip("no cgroup v2 hierarchy here")
    group = root / f"sigtop-test-kill-{os.getpid()}"
    group.mkdir()
    members: list[subprocess.Popen] = []
    writer = None
    try:
        for _ in range(3):
            members.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
            (group / "cgroup.procs").write_text(str(members[-1].pid))
        code = f"import sys; sys.stdin.readline(); open({str(group / 'cgroup.kill')!r}, 'w').write('1')"
        writer = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, text=True)

        def work():
            writer.stdin.write("\n")
            writer.stdin.flush()
            assert writer.wait(timeout=10) == 0
            for member in members:
                assert member.wait(timeout=10) == -signal.SIGKILL

        model = measure(work)
    finally:
        for child in (*members, writer):
            if child is not None and child.poll() is None:
                child.kill()  # ours
                child.wait()
        group.rmdir()
    kills = [
        r for r in model.flows.values() if r.key.sig == signal.SIGKILL and r.key.target_pid in {m.pid for m in members}
    ]
    assert sorted(r.key.target_pid for r in kills) == sorted(m.pid for m in members)
    assert all(r.count == 1 for r in kills)
    if not tracer.raw_generate:  # no BTF: the writer's task flags cannot be read, so the kernel's
        assert {(r.key.sender_pid, r.key.via) for r in kills} == {(0, "kernel")}
        seen_here(tracer, model)
        return
    assert {(r.key.sender_pid, r.key.via) for r in kills} == {(writer.pid, "cgroup.kill")}
    for member in members:
        death = death_of(model, member.pid)
        assert (death.sig, death.cause_kind, death.sender_pid) == (signal.SIGKILL, "cgroup-kill", writer.pid)
        assert death.cause == f"{writer.pid} python wrote 1 to its cgroup's cgroup.kill"
    flows = [f for f in to_json(model)["flows"] if f["sig"] == signal.SIGKILL and f["sender_pid"] == writer.pid]
    assert {(f["syscall"], f["origin"]) for f in flows} == {("cgroup.kill", "cgroup.kill")}


def memory_cgroup() -> tuple[Path, str] | None:
    """A cgroup directory where memory limits can be set (v1 memory, or v2 with memory delegated), and the file."""
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "memory.limit_in_bytes").exists():
        return v1, "memory.limit_in_bytes"
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        control = root / "cgroup.subtree_control"
        if control.exists() and "memory" in control.read_text().split():
            return root, "memory.max"
    return None


HOG = "import sys\nsys.stdin.readline()\nx = bytearray(512 << 20)\nprint('survived')\n"


def test_an_oom_kill_names_the_oom_killer(tracer, measure):
    """A child in a memory-limited cgroup the test makes is killed by the OOM killer, and sigtop says so."""
    found = memory_cgroup()
    if found is None:
        why = "no cgroup memory controller here (v1 memory, or v2 with memory in the root's subtree_control)"
        if REQUIRE_BPF:
            pytest.fail(why)
        pytest.skip(why)
    root, limit_file = found
    group = root / f"sigtop-test-oom-{os.getpid()}"
    group.mkdir()
    hog = None
    try:
        (group / limit_file).write_text(str(32 << 20))
        hog = subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        (group / "cgroup.procs").write_text(str(hog.pid))

        def work():
            hog.stdin.write("\n")
            hog.stdin.flush()
            assert hog.wait(timeout=30) == -signal.SIGKILL

        model = measure(work)
    finally:
        if hog is not None and hog.poll() is None:
            hog.kill()
            hog.wait()
        group.rmdir()
    if not seen_here(tracer, model):
        return
    death = death_of(model, hog.pid)
    assert (death.sig, death.cause_kind) == (signal.SIGKILL, "oom")
    assert death.cause.startswith("the OOM killer (anon-rss ")
    (doc,) = [d for d in to_json(model)["deaths"] if d["pid"] == hog.pid]
    assert doc["cause_kind"] == "oom"
