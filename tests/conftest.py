"""Shared fixtures: children the tests start (and always reap), and a live tracer.

Safety: tests signal only processes they started. Each child runs in a
process group of its own (or one its test made), so a process-group signal
in a test can only reach children of that test.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HELPER = Path(__file__).parent / "helpers" / "child.py"
RECORDING = Path(__file__).parent / "data" / "recording.jsonl"

# Snapshots and clock columns must not depend on where the tests run.
os.environ["TZ"] = "UTC"
time.tzset()
REQUIRE_BPF = os.environ.get("SIGTOP_REQUIRE_BPF") == "1"


class Child:
    """A helper process driven over its stdin/stdout (tests/helpers/child.py)."""

    def __init__(self, process_group: int | None = None) -> None:
        # process_group 0: a new group of its own (setpgid(0, 0)), so no
        # group signal of a test can reach anything but that test's children.
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            process_group=process_group or 0,
        )
        self.pid = self.proc.pid

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        answer = b""
        while not answer.endswith(b"\n"):
            byte = self.proc.stdout.read(1)  # type: ignore[union-attr]
            if not byte:
                raise RuntimeError(f"child {self.pid} exited while asked {line!r}")
            if byte != b"!":
                answer += byte
        return answer.decode().strip()

    def wait_ack(self, timeout_s: float = 10.0) -> None:
        """Wait for one handler run (the handler writes '!'); fail, never hang."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        assert ready, f"child {self.pid} ran no handler within {timeout_s} s"
        assert self.proc.stdout.read(1) == b"!"  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child: safe
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def make(**kwargs: int) -> Child:
        child = Child(**kwargs)
        children.append(child)
        child.ask("count SIGUSR1")  # ready: the interpreter is up
        return child

    yield make
    for child in children:
        child.stop()


def bpf_unavailable() -> str | None:
    """Why live BPF tests cannot run here, or None."""
    from sigtop.live import preflight

    try:
        preflight.check_privileges()
        preflight.ensure_tracefs()
        preflight.import_bcc()
    except preflight.CollectorError as exc:
        return str(exc)
    if preflight.kernel_headers_dir() is None:
        return "no kernel headers (make setup)"
    return None


@pytest.fixture(scope="session")
def bpf_ready() -> None:
    reason = bpf_unavailable()
    if reason:
        if REQUIRE_BPF:
            pytest.fail(f"BPF tests cannot run, and SIGTOP_REQUIRE_BPF=1: {reason}")
        pytest.skip(f"BPF tests need root and BCC: {reason}")


def open_fds(kind: str) -> int:
    """How many of this process's fds are of a kind (e.g. 'bpf-prog', 'perf_event')."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if kind in os.readlink(f"/proc/self/fd/{fd}"):
                count += 1
        except OSError:
            pass
    return count


@pytest.fixture(scope="module", params=[True, False], ids=["btf", "no-btf"])
def tracer(bpf_ready: None, request: pytest.FixtureRequest) -> Iterator[object]:
    """One live BpfSource for a module's tests, polled synchronously by `measure`.

    Twice: as on a kernel with BTF (in-flight syscalls in task storage, a
    raw signal_generate reading the target task) and as on one without (an
    LRU hash, the classic tracepoint); both must count exactly.
    """
    from sigtop.live.collector import BpfSource
    from sigtop.live.config import TraceConfig

    btf = request.param
    source = BpfSource(TraceConfig(exclude_self=False, details=True, task_storage=btf, raw_generate=btf))
    source.attach()
    assert (source.task_storage, source.raw_generate) == (btf, btf)
    try:
        yield source
    finally:
        source.detach()


@pytest.fixture
def measure(tracer: object) -> Callable[[Callable[[], None]], object]:
    """Run a workload under the tracer; return a fresh model of exactly what it caused."""
    from sigtop.model import SignalModel

    def run(workload: Callable[[], None]) -> SignalModel:
        tracer.read_events()  # type: ignore[attr-defined]
        tracer.collect()  # type: ignore[attr-defined]  # forget what came before
        workload()
        model = SignalModel()
        tracer.read_events()  # type: ignore[attr-defined]
        model.apply(tracer.collect())  # type: ignore[attr-defined]
        return model

    return run
