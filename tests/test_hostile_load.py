"""Counts stay exact whatever other processes do: an unprivileged flood of made-up targets,
and more distinct flows than the kernel's map holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigtop.export.report import to_json
from sigtop.model import SignalModel
from sigtop.names import Result
from sigtop.tables.flows import OVERFLOW
from tests.conftest import as_nobody, collect_until, own_config, read_line
from tests.test_bpf import only_flow

pytestmark = pytest.mark.bpf

NOBODY = as_nobody()
FLOOD = """
import os, sys
n = int(sys.argv[1])
for i in range(n):
    try:
        os.kill(10_000_000 + i, 0)  # no such process: ESRCH, each a new pid
    except OSError:
        pass
"""


def test_an_unprivileged_flood_of_made_up_targets_cannot_blind(tracer, measure, spawn):
    """The attack: 20,000 kill(10000000+i, 0) from an unprivileged user filled the flow map in
    a tenth of a second, and a 100,000-signal storm after it was counted 0."""
    sink = spawn()
    sink.ask("ignore SIGUSR2")
    flood, storm = 20_000, 100_000
    senders: list[int] = []

    def work():
        attacker = subprocess.Popen([*NOBODY, sys.executable, "-c", FLOOD, str(flood)], process_group=0, cwd="/")
        senders.append(attacker.pid)
        assert attacker.wait(timeout=60) == 0
        for _ in range(storm):
            os.kill(sink.pid, signal.SIGUSR2)

    model = measure(work)
    assert only_flow(model, os.getpid(), sink.pid).count == storm
    (probes,) = [r for r in model.flows.values() if r.key.sender_pid == senders[0] and r.key.sig == 0]
    assert (probes.key.sig, probes.failed, dict(probes.errors)) == (0, flood, {3: flood})  # one row: ESRCH
    assert model.stats.flows_full == 0


def test_more_flows_than_the_map_holds_are_all_counted(bpf_ready, spawn):
    """A 64-entry flow map and 93 distinct flows: what does not fit is counted in overflow
    rows (by signal and result), exactly; idle flows are evicted to make room again."""
    from sigtop.live.collector import BpfSource

    children = [spawn() for _ in range(3)]
    for child in children:
        child.ask("ignorert")
    rt = range(signal.SIGRTMIN, signal.SIGRTMAX + 1)
    source = BpfSource(own_config(*(c.pid for c in children), details=False, flow_entries=64))
    source.attach()
    try:
        source.collect()
        model = SignalModel()

        def send_round() -> int:
            for child in children:
                for sig in rt:
                    os.kill(child.pid, sig)
            return len(children) * len(rt)

        sent = send_round()
        model.apply(source.collect())
        assert model.stats.flows_full > 0
        assert model.map_fill["flows"] == 1.0
        model.apply(source.collect())  # nothing moved: idle flows are evicted, their counts already in
        assert model.map_fill["flows"] <= 0.25 + 1 / 64
        sent += send_round()
        model.apply(source.collect())
    finally:
        source.detach()
    pids = {c.pid for c in children}
    mine = sum(r.count for r in model.flows.values() if r.key.sender_pid == os.getpid() and r.key.target_pid in pids)
    overflowed = sum(r.count for r in model.flows.values() if r.key.via == OVERFLOW and r.key.sig in rt)
    assert mine + overflowed == sent
    assert overflowed > 0
    assert all(r.results[Result.ignored] == r.count for r in model.flows.values() if r.key.via == OVERFLOW)
    doc = to_json(model)
    assert {f["sender_comm"] for f in doc["flows"] if f["origin"] == OVERFLOW} == {"[overflow]"}
    assert doc["dropped"]["flows_map_full"] == overflowed


def test_giant_command_lines_are_capped_where_they_are_read():
    """300 processes with 1 MB of argv once grew root's sigtop by 294 MB: now 4 KiB each, cut visibly."""
    import tracemalloc

    from sigtop.live.procfs import MAX_CMDLINE_BYTES, read_proc

    arg = "A" * 100_000  # the kernel takes at most 128 KiB per argument
    children = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *[arg] * 10], process_group=0)
        for _ in range(20)
    ]
    try:
        tracemalloc.start()
        infos = [read_proc(c.pid) for c in children]
        _now, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        for child in children:
            child.kill()
            child.wait()
    for info in infos:
        assert info is not None
        assert info.cmdline.endswith(f" …[cut at {MAX_CMDLINE_BYTES} bytes]")
        assert len(info.cmdline) < MAX_CMDLINE_BYTES + 40
    assert peak < 1_000_000  # 20 MB of argv read as ~100 KB


def test_the_process_table_holds_a_bounded_number_of_bytes():
    from sigtop.registry import MAX_PROC_TEXT
    from sigtop.wire import Batch, ProcInfo

    model = SignalModel()
    huge = "x" * 1_000_000  # as a crafted recording could hold
    for start in range(0, 30_000, 1000):
        procs = [ProcInfo(pid, pid, "p", cmdline=huge, cgroup="/c" * 5000) for pid in range(start, start + 1000)]
        model.apply(Batch(ts=1, interval_s=1, procs=procs))
    assert model.registry.proc_text <= MAX_PROC_TEXT
    assert sum(len(p.cmdline) + len(p.cgroup) for p in model.procs.values()) == model.registry.proc_text
    assert all(p.cmdline.endswith("characters]") for p in model.procs.values())


NAMED_SENDER = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode())  # PR_SET_NAME: this process's comm
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
for _ in range(int(sys.argv[2])):
    os.kill(os.getpid(), signal.SIGUSR2)  # to itself: the target side of its identity too
if len(sys.argv) > 3:
    print("sent", flush=True)
    sys.stdin.readline()  # stay, as an impostor would, until told to go
"""


@pytest.fixture(scope="module")
def with_pid(tmp_path_factory) -> str:
    """tests/helpers/with_pid.c, compiled here: a child with exactly the pid asked for (clone3)."""
    binary = tmp_path_factory.mktemp("with_pid") / "with_pid"
    source = Path(__file__).parent / "helpers" / "with_pid.c"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(source)], check=True)
    return str(binary)


def test_a_reused_pid_is_a_new_process_with_its_own_row(tracer, with_pid):
    """An unprivileged process given the pid of an earlier (root) one must not inherit its row,
    comm, user or cmdline: identity is pid + start time."""
    model = SignalModel()
    tracer.read_events()
    tracer.collect()
    first = subprocess.Popen([sys.executable, "-c", NAMED_SENDER, "root-owner", "3"], process_group=0)
    assert first.wait(timeout=30) == 0
    collect_until(tracer, None, model=model)  # the first owner is gone before /proc could be read
    # Start times are in 10 ms ticks: a pid reused within one would look like the same process
    # (outside a test, a pid comes back only after the pid space wraps).
    time.sleep(0.05)
    second = subprocess.Popen(
        [with_pid, str(first.pid), *NOBODY, sys.executable, "-c", NAMED_SENDER, "nobody-owner", "5", "stay"],
        process_group=0, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/",
    )  # fmt: skip
    try:
        assert read_line(second.stdout).strip() == "sent"  # it has its pid, and sent its five

        def second_owner_seen(m: SignalModel) -> bool:
            return sum(r.count for r in m.flows.values() if r.key.sender_pid == first.pid and r.key.sender_gen) >= 5

        collect_until(tracer, second_owner_seen, model=model)
    finally:
        second.kill()  # ours: the helper; the reused-pid child dies with it
        second.wait()
    rows = sorted(
        (r for r in model.flows.values() if r.key.sender_pid == first.pid and r.key.sig == signal.SIGUSR2),
        key=lambda r: r.key.sender_gen,
    )
    assert [(r.key.sender_gen, r.key.target_gen, r.count, r.sender_comm) for r in rows] == [
        (0, 0, 3, "root-owner"),
        (1, 1, 5, "nobody-owner"),
    ]
    assert model.proc_of(first.pid, 1).user == "nobody"
    assert model.proc_of(first.pid, 0) is None  # the first owner was never read: nothing is made up


HOARDER = """
import os, signal, sys, threading
blockable = [s for s in range(1, 32) if s not in (signal.SIGKILL, signal.SIGSTOP)]
signal.pthread_sigmask(signal.SIG_BLOCK, blockable)  # inherited by its threads
done = threading.Event()
tids = []
def hold():
    tids.append(threading.get_native_id())
    done.wait()
threads = [threading.Thread(target=hold) for _ in range(4)]
for t in threads:
    t.start()
while len(tids) < 4:
    pass
for tid in tids:  # every standard signal pending on every thread's own list
    for sig in blockable:
        signal.pthread_kill(next(t.ident for t in threads if t.native_id == tid), sig)
print(len(tids) * len(blockable), flush=True)
sys.stdin.readline()
done.set()
"""


def test_an_unprivileged_hoard_of_pending_signals_cannot_make_counts_wrong(bpf_ready):
    """An unprivileged process keeps more signals pending than the kernel side can follow (a
    64-record pending map): every signal is still counted, and each one's fate is either followed
    or counted as untracked (and said so), never silently wrong; memory stays bounded by the map."""
    from sigtop.live.collector import BpfSource

    source = BpfSource(own_config(details=False, pending_entries=64))
    source.attach()
    hoarder = None
    try:
        source.collect()
        hoarder = subprocess.Popen(
            [*NOBODY, sys.executable, "-c", HOARDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd="/",
        )  # fmt: skip
        sent = int(read_line(hoarder.stdout))

        def accounted(m: SignalModel) -> bool:  # every queued one pending, untracked or flushed
            rows = [r for r in m.flows.values() if r.key.sender_pid == hoarder.pid]
            queued = sum(r.queued for r in rows)
            return queued == sent and sum(r.pending + r.untracked + r.read for r in rows) == queued

        model = collect_until(source, accounted)
        rows = [r for r in model.flows.values() if r.key.sender_pid == hoarder.pid]
        assert sum(r.count for r in rows) == sent == 4 * 29  # all counted
        queued = sum(r.queued for r in rows)
        assert queued == sent
        untracked = sum(r.untracked for r in rows)
        assert untracked > 0  # the map is smaller than the hoard
        # Nothing unaccounted for. "read" here: the kernel flushed them (a SIGCONT flushes the pending
        # stop signals, a stop signal the pending SIGCONT), which /proc showed.
        flushed = sum(r.read for r in rows)
        assert {r.key.sig for r in rows if r.read} <= {signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
        assert sum(r.pending for r in rows) + untracked + flushed == queued
        assert model.stats.pending_full >= untracked  # and said so (header: FATES NOT FOLLOWED)
        hoarder.stdin.write("\n")
        hoarder.stdin.flush()
        assert hoarder.wait(timeout=10) == 0

        def settled(m: SignalModel) -> bool:
            rows = [r for r in m.flows.values() if r.key.sender_pid == hoarder.pid]
            return sum(r.discarded + r.untracked + r.read for r in rows) == queued

        collect_until(source, settled, model=model)
        rows = [r for r in model.flows.values() if r.key.sender_pid == hoarder.pid]
        # Its threads ended with their signals pending: each followed one is discarded now (or
        # was flushed by the kernel on the way, read).
        flushed = sum(r.read for r in rows)
        assert {r.key.sig for r in rows if r.read} <= {signal.SIGCONT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
        assert sum(r.discarded for r in rows) + untracked + flushed == queued
        assert sum(r.pending for r in rows) == 0
    finally:
        if hoarder is not None and hoarder.poll() is None:
            hoarder.kill()  # ours
            hoarder.wait()
        source.detach()


def test_an_unprivileged_churn_of_rows_evicts_its_own_not_roots(tracer, spawn):
    """200 short-lived processes of uid 65534 each signal themselves (and their parent, SIGCHLD)
    into a table capped at 50 rows: root's earlier flow stays; what went is folded into nobody's
    totals, every row of it."""
    child = spawn()
    child.ask("ignore SIGUSR2")
    model = SignalModel(max_rows=50)
    tracer.read_events()
    model.apply(tracer.collect())  # forget what came before
    os.kill(child.pid, signal.SIGUSR2)  # our own child: root's evidence, first and oldest
    collect_until(tracer, None, model=model)
    churn = [*as_nobody(), "sh", "-c", 'for i in $(seq 200); do sh -c "kill -URG \\$\\$"; done']
    assert subprocess.run(churn, timeout=120, cwd="/").returncode == 0

    def nobodys(m: SignalModel) -> tuple[int, int]:
        kept = [r for r in m.flows.values() if r.owner_uid == 65534 and r.sender_comm == "sh"]
        evicted = m.flows_table.evicted.get((65534, "sh"))
        return len(kept), evicted.rows if evicted else 0

    # Each inner sh's SIGURG to itself and SIGCHLD to the outer one, and the outer one's to us.
    model = collect_until(tracer, lambda m: sum(nobodys(m)) == 2 * 200 + 1, model=model)
    mine = [r for r in model.flows.values() if r.key.sender_pid == os.getpid() and r.key.target_pid == child.pid]
    assert [(r.key.sig, r.count) for r in mine] == [(signal.SIGUSR2, 1)]
    assert mine[0].owner_uid == 0
    _kept, evicted = nobodys(model)
    assert evicted >= 401 - 50
    doc = to_json(model)
    (entry,) = [e for e in doc["evicted_flows"] if e["uid"] == 65534 and e["comm"] == "sh"]
    assert (entry["user"], entry["rows"], entry["signals"]) == ("nobody", evicted, evicted)
