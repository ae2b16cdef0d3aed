"""A step of the wall clock moves nothing sigtop keeps (README: "What a pipeline can rely on").

The step is given to sigtop alone: tests/helpers/clockshift.c, preloaded, shifts its
CLOCK_REALTIME by what the test writes in a file; its monotonic and boot-time clocks are the
machine's, as in a real step (NTP's first sync, a VM resumed, `date -s`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import killed_after, read_line
from tests.test_cli import SIGTOP

HOUR = 3600.0


@pytest.fixture(scope="module")
def clockshift(tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("clockshift") / "clockshift.so"
    source = Path(__file__).parent / "helpers" / "clockshift.c"
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(source), "-ldl"], check=True)
    return lib


def shifted_env(lib: Path, shift_file: Path) -> dict[str, str]:
    shift_file.write_text("0")
    return {**os.environ, "LD_PRELOAD": str(lib), "CLOCKSHIFT_FILE": str(shift_file)}


def started_now(pid: int) -> float:
    """The process's start in the machine's own (unshifted) wall clock."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) + ticks / os.sysconf("SC_CLK_TCK")


def test_a_pid_read_again_across_a_clock_step_is_the_same_process(clockshift, tmp_path, spawn):
    """/proc read before and after a +1 h step: one process, not a pid reused (one row, not two)."""
    child = spawn()
    shift = tmp_path / "shift"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from sigtop.live.procfs import read_proc
        from sigtop.registry import ProcessRegistry
        registry = ProcessRegistry()
        first = read_proc({child.pid})
        Path({str(shift)!r}).write_text("{HOUR}")
        time.sleep(0.05)  # the shim re-reads the file every 5 ms
        second = read_proc({child.pid})
        # Its start as read twice: equal but for the microseconds between two clock reads.
        print(registry.remember(first), registry.remember(second), abs(second.started - first.started) < 0.001)
    """)
    env = shifted_env(clockshift, shift)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "True"]  # not reused, and its start did not move


@pytest.mark.bpf
def test_a_clock_step_during_a_trace_splits_no_flow_and_moves_no_time(bpf_ready, clockshift, tmp_path, spawn):
    """+1 h and back while signals flow: one row with every signal, its times and the target's
    start where they were."""
    child = spawn()
    child.ask("handle SIGUSR1")
    shift = tmp_path / "shift"
    tracer = subprocess.Popen(
        [*SIGTOP, "batch", "--json", "--pid", str(child.pid), "--interval", "0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=shifted_env(clockshift, shift),
    )
    sent = 0
    with killed_after(tracer):
        assert read_line(tracer.stderr, timeout_s=30).strip() == "Tracing signals... Hit Ctrl-C to end."
        for step in ("0", str(HOUR), "0.5", "0"):
            shift.write_text(step)
            for _ in range(40):
                os.kill(child.pid, signal.SIGUSR1)  # our own child
                child.wait_ack()
                sent += 1
                time.sleep(0.008)  # 0.3 s at each step: a few collections (--interval 0.1)
        ended = time.time()
        tracer.send_signal(signal.SIGINT)  # our own child
        out, err = tracer.communicate(timeout=30)
    assert tracer.returncode == 0, err
    doc = json.loads(out)
    rows = [f for f in doc["flows"] if f["target_pid"] == child.pid and f["signame"] == "SIGUSR1"]
    assert len(rows) == 1, rows
    (row,) = rows
    assert row["count"] == sent
    assert abs(row["target_started"] - started_now(child.pid)) < 2.0
    assert row["last_ts"] <= ended + 1.0
