"""A program compiled once and loaded by every later start (sigtop.live.build, objects, cache).

The first start on a kernel and configuration compiles in a child; every
later one loads what it kept. Both must count exactly the same signals, the
tracing process must never map BCC's compiler, and a kept program that is
corrupt, writable by another user or refused by the verifier is never
loaded: it is compiled again.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import collect_until, own_config

pytestmark = pytest.mark.bpf


@pytest.fixture
def compiled_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "compiled"
    monkeypatch.setenv("SIGTOP_CACHE_DIR", str(where))
    return where


def handled_under_a_fresh_attach(child, n: int) -> tuple[bool, int]:
    """(compiled for this attach?, the signals counted from this process to the child)."""
    from sigtop.live.collector import BpfSource

    source = BpfSource(own_config(child.pid, details=True))
    source.attach()
    try:
        for _ in range(n):
            os.kill(child.pid, signal.SIGUSR1)
            child.wait_ack()

        def counted(model) -> int:
            return sum(
                r.count
                for r in model.flows.values()
                if (r.key.sender_pid, r.key.target_pid, r.key.sig) == (os.getpid(), child.pid, signal.SIGUSR1)
            )

        model = collect_until(source, lambda m: counted(m) >= n)
        return source.compiled, counted(model)
    finally:
        source.detach()


def kept_programs(where: Path) -> list[Path]:
    return sorted(p for p in where.glob("*.json") if not p.name.startswith("offsets-"))


def test_the_kernels_offsets_are_read_from_btf_once_and_kept_privately(bpf_ready, compiled_dir, spawn):
    """Parsing BTF is most of a warm start: the offsets are kept beside the programs, loaded as
    they are (root's alone), and one that is corrupt or writable by others is read again."""
    from sigtop.live.loader import task_offsets

    child = spawn()
    child.ask("handle SIGUSR1")
    assert handled_under_a_fresh_attach(child, 2) == (True, 2)
    (kept,) = compiled_dir.glob("offsets-*.json")
    assert kept.stat().st_mode & 0o777 == 0o600
    assert json.loads(kept.read_text())["offsets"] == task_offsets()
    for spoil in (lambda: kept.write_text('{"format": 1, "offsets": {"TASK_PID_OFFSET": "x"}}'),
                  lambda: kept.write_text("{not json"), lambda: kept.chmod(0o646)):  # fmt: skip
        spoil()
        assert handled_under_a_fresh_attach(child, 2) == (False, 2)  # the program is still kept
        assert json.loads(kept.read_text())["offsets"] == task_offsets()
        assert kept.stat().st_mode & 0o777 == 0o600


def test_the_first_start_compiles_and_the_next_loads_what_it_kept_counting_the_same(bpf_ready, compiled_dir, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")
    assert handled_under_a_fresh_attach(child, 30) == (True, 30)
    (kept,) = kept_programs(compiled_dir)
    assert compiled_dir.stat().st_mode & 0o777 == 0o700
    assert kept.stat().st_mode & 0o777 == 0o600
    assert handled_under_a_fresh_attach(child, 30) == (False, 30)
    assert handled_under_a_fresh_attach(child, 7) == (False, 7)  # and again: nothing left over from the last
    assert int(child.ask("count SIGUSR1")) == 67


def test_a_kept_program_that_is_corrupt_writable_or_refused_is_compiled_again(bpf_ready, compiled_dir, spawn):
    child = spawn()
    child.ask("handle SIGUSR1")
    assert handled_under_a_fresh_attach(child, 3) == (True, 3)
    (kept,) = kept_programs(compiled_dir)
    good = json.loads(kept.read_text())

    kept.write_text("{not json")
    assert handled_under_a_fresh_attach(child, 3) == (True, 3)

    kept.chmod(0o646)  # another user could have written it: never loaded
    assert handled_under_a_fresh_attach(child, 3) == (True, 3)
    assert kept.stat().st_mode & 0o777 == 0o600  # and replaced by a private one

    # Valid as a document, refused by the verifier (a program that returns what it never set).
    refused = json.loads(json.dumps(good))
    refused["programs"][0]["insns"] = base64.b64encode(bytes([0x95, 0, 0, 0, 0, 0, 0, 0])).decode()
    refused["programs"][0]["maps"] = []
    kept.write_text(json.dumps(refused))
    assert handled_under_a_fresh_attach(child, 3) == (True, 3)
    assert json.loads(kept.read_text()) == good  # the refused one was dropped and the compile kept again

    # Valid JSON of the wrong shape, or pointing past its own code: refused, never a traceback.
    for broken in (
        {"format": 1, "maps": 5},
        {**good, "programs": [{**good["programs"][0], "maps": [[10**6, "flows"]]}]},
    ):
        kept.write_text(json.dumps(broken))
        assert handled_under_a_fresh_attach(child, 3) == (True, 3)

    compiled_dir.chmod(0o777)  # a directory anyone can write to: nothing in it is trusted
    assert handled_under_a_fresh_attach(child, 3) == (True, 3)
    compiled_dir.chmod(0o700)
    assert handled_under_a_fresh_attach(child, 3) == (False, 3)


TRACING_PROCESS = """
import json, sys
from sigtop.live.collector import BpfSource
from sigtop.live.config import TraceConfig
source = BpfSource(TraceConfig(pids=(1,), details=False))
source.attach()
with open("/proc/self/maps") as maps:
    compiler = sorted({line.split()[-1] for line in maps if "libLLVM" in line or "libclang" in line})
print(json.dumps({"compiled": source.compiled, "bcc": "bcc" in sys.modules, "compiler": compiler}))
source.detach()
"""


def test_the_tracing_process_never_maps_the_compiler(bpf_ready, compiled_dir):
    """BCC and LLVM live in the compiling child only: cold or warm, the process that traces has neither."""
    for compiled in (True, False):
        done = subprocess.run(
            [sys.executable, "-c", TRACING_PROCESS], capture_output=True, text=True, timeout=120, check=True
        )
        assert json.loads(done.stdout) == {"compiled": compiled, "bcc": False, "compiler": []}, done.stderr
