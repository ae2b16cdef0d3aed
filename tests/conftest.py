"""Shared fixtures: children the tests start (and always reap), privilege drops, and live tracers
that see only this test run's own processes.

Safety: tests signal only processes they started. Each child runs in a
process group of its own (or one its test made), so a process-group signal
in a test can only reach children of that test.

Isolation: every tracer here filters in the kernel on this test process and
everything it starts after attach (`TraceConfig(pids=(os.getpid(),),
follow=True)`), so a test judges its own processes only, whatever else the
machine runs; and tests wait for what they measure (`measure(..., until=)`),
failing with what they saw when it does not come.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

HELPER = Path(__file__).parent / "helpers" / "child.py"
RECORDING = Path(__file__).parent / "data" / "recording.jsonl"
CHILDREN = Path(__file__).parent / "data" / "children.jsonl"
NO_BTF = "/nonexistent/btf/vmlinux"  # the no-BTF seam: BTF detection finds nothing there
ANSWER_S = 30.0  # how long a child may take to answer (a busy 2-core box)

# Snapshots and clock columns must not depend on where the tests run.
os.environ["TZ"] = "UTC"
time.tzset()
REQUIRE_BPF = os.environ.get("SIGTOP_REQUIRE_BPF") == "1"
# Compiled programs kept for this run only (each configuration compiles once, in the first test
# that traces with it, and every later one loads it): never the machine's /var/cache/sigtop.
COMPILED_CACHE = tempfile.mkdtemp(prefix="sigtop-test-compiled-")
os.environ["SIGTOP_CACHE_DIR"] = COMPILED_CACHE
atexit.register(shutil.rmtree, COMPILED_CACHE, ignore_errors=True)
# The same examples on every run: a failure is reproduced by running again.
settings.register_profile("sigtop", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("sigtop")


def as_nobody(*caps: str) -> list[str]:
    """A command prefix that runs as uid 65534 with only these capabilities, plus reading any file:
    so the checkout may live anywhere (a 0700 /root or mktemp -d too) and still be imported."""
    wanted = ",".join(f"+{c}" for c in ("dac_read_search", *caps))
    ids = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    return ["setpriv", *ids, f"--inh-caps={wanted}", f"--ambient-caps={wanted}"]


def read_line(stream, timeout_s: float = ANSWER_S, what: str = "a line") -> str:
    """One line from a child's pipe, or fail (never hang) after timeout_s."""
    deadline = time.monotonic() + timeout_s
    line = b""
    fd = stream.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        if not ready:
            raise AssertionError(f"no {what} within {timeout_s} s (got {line!r})")
        byte = os.read(fd, 1)
        if not byte:
            raise AssertionError(f"the pipe closed before {what} (got {line!r})")
        line += byte
    return line.decode()


class Child:
    """A helper process driven over its stdin/stdout (tests/helpers/child.py)."""

    def __init__(self, process_group: int | None = None, prefix: list[str] | None = None) -> None:
        # process_group 0: a new group of its own (setpgid(0, 0)), so no
        # group signal of a test can reach anything but that test's children.
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, str(HELPER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            process_group=process_group or 0,
            cwd="/",
        )
        self.pid = self.proc.pid

    def ask(self, line: str, timeout_s: float = ANSWER_S) -> str:
        """Send a command; its one-line answer (the handler's '!' acks in between are skipped)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        deadline = time.monotonic() + timeout_s
        answer = b""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        while not answer.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"child {self.pid} did not answer {line!r} within {timeout_s} s")
            byte = os.read(fd, 1)
            if not byte:
                raise AssertionError(f"child {self.pid} exited while asked {line!r}")
            if byte != b"!":
                answer += byte
        return answer.decode().strip()

    def wait_ack(self, timeout_s: float = ANSWER_S) -> None:
        """Wait for one handler run (the handler writes '!'); fail, never hang."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        assert ready, f"child {self.pid} ran no handler within {timeout_s} s"
        assert os.read(self.proc.stdout.fileno(), 1) == b"!"  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child: safe
        self.proc.wait(timeout=30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def make(**kwargs) -> Child:
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


@contextlib.contextmanager
def killed_after(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The body runs with a process this test started; however it ends, the process is not left
    running (killed and reaped: ours)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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


def own_config(*started: int, **changes):
    """A trace configuration that sees this test run's processes only: this process and all it
    starts after attach (in the kernel), and those it `started` before, sigtop's own pid included
    (the tests send from it)."""
    from sigtop.live.config import TraceConfig

    return TraceConfig(**{"pids": (os.getpid(), *started), "follow": True, "exclude_self": False, **changes})


# Each BPF test that takes `tracer` runs twice: on this kernel's BTF, and as on a kernel without it
# (BTF detection pointed at nothing: the real fallback, chosen by the real detection).
MODES = {"btf": {}, "no-btf": {"vmlinux": NO_BTF}}


@pytest.fixture(scope="module", params=list(MODES))
def tracer(bpf_ready: None, request: pytest.FixtureRequest) -> Iterator[object]:
    """One live BpfSource for a module's tests, polled synchronously by `measure`."""
    from sigtop.live.collector import BpfSource

    source = BpfSource(own_config(details=True, **MODES[request.param]))
    source.attach()
    btf = request.param == "btf"
    assert (source.task_storage, source.raw_generate) == (btf, btf), "BTF detection chose otherwise"
    try:
        yield source
    finally:
        source.detach()


def collect_until(
    source: object,
    until: Callable[[object], bool] | None,
    timeout_s: float = 10.0,
    model: object = None,
) -> object:
    """Fold collections into a model until `until(model)` holds; fail with what was seen if it
    never does. Without `until`, one collection (the kernel's counts are in place when a
    syscall returns; what settles later, fates, needs `until`)."""
    from sigtop.model import SignalModel

    model = model if model is not None else SignalModel()
    deadline = time.monotonic() + timeout_s
    while True:
        source.read_events()  # type: ignore[attr-defined]
        model.apply(source.collect())  # type: ignore[attr-defined]
        if until is None or until(model):
            return model
        if time.monotonic() > deadline:
            rows = sorted(model.flows.values(), key=lambda r: -r.attempts)[:12]  # type: ignore[attr-defined]
            seen = "; ".join(
                f"{r.key.sender_pid}->{r.key.target_pid} sig {r.key.sig} {r.key.via}: count {r.count} "
                f"queued {r.queued} taken {r.taken} read {r.read} pending {r.pending} discarded {r.discarded}"
                for r in rows
            )
            pytest.fail(f"not settled within {timeout_s} s: {seen or 'no flows'}")
        time.sleep(0.05)


@pytest.fixture
def measure(tracer: object) -> Callable[..., object]:
    """Run a workload under the tracer; a fresh model of what it caused (waiting for `until`)."""

    def run(workload: Callable[[], None], until: Callable | None = None, timeout_s: float = 10.0) -> object:
        tracer.read_events()  # type: ignore[attr-defined]
        tracer.collect()  # type: ignore[attr-defined]  # forget what came before
        workload()
        return collect_until(tracer, until, timeout_s)

    return run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With SIGTOP_REQUIRE_BPF=1 (CI) every skip is a failure: a skip there hides what did not run."""
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_BPF and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, and SIGTOP_REQUIRE_BPF=1 allows no skip: {report.longrepr}"
