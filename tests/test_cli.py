"""The command line as a user meets it: one-line errors, and batch mode on real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import as_nobody, killed_after

SIGTOP = [sys.executable, "-m", "sigtop.cli"]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*SIGTOP, *args], capture_output=True, text=True, timeout=60, **kwargs)


def run_unprivileged(*args: str, caps: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    if os.geteuid() != 0:
        return run(*args)
    env = {**os.environ, "HOME": "/"}
    return subprocess.run(
        [*as_nobody(*caps), *SIGTOP, *args], capture_output=True, text=True, timeout=60, env=env, cwd="/"
    )


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert any(needle in line for line in lines), result.stderr
    assert len(lines) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["batch", "--pid", "abc"], "not a pid"),
        (["batch", "--pid", "-5"], "not a pid"),
        (["--signal", "SIGFOO"], "unknown signal name"),
        (["batch", "--signal", "99"], "out of range"),
        (["batch", "--duration", "0"], "must be more than 0"),
        (["replay", "/nonexistent/rec.jsonl"], "cannot read recording"),
        (["batch", "--pid", "4294967295", "--duration", "1"], "no process 4294967295 (--pid)"),
        (["stream", "--pid", "999999999"], "no process 999999999 (--pid)"),
    ],
)
def test_bad_input_is_one_line(args, needle):
    assert_one_line_error(run(*args), needle)


def test_corrupt_recording_names_the_line(tmp_path):
    path = tmp_path / "rec.jsonl"
    path.write_text('{"format": "sigtop-recording", "version": 1}\n{"ts": 1, "interval_s": 1}\n{"ts": 2, "inter\n')
    assert_one_line_error(run("replay", str(path)), ":3: corrupt line")
    path.write_text("hello\n")
    assert_one_line_error(run("replay", str(path)), "not a sigtop recording")


def test_not_root_is_one_line():
    assert_one_line_error(run_unprivileged("batch", "--duration", "1"), "needs root")


def test_help_needs_no_root_or_bcc():
    result = run("--help")
    assert result.returncode == 0
    for command in ("batch", "record", "replay", "doctor"):
        assert command in result.stdout


@pytest.mark.bpf
def test_batch_json_on_real_signals(bpf_ready, spawn):
    """sigtop batch --json --pid CHILD, as a script would run it, around real signals."""
    child = spawn()
    child.ask("handle SIGUSR1")
    child.ask("ignore SIGUSR2")
    tracer = subprocess.Popen(
        [*SIGTOP, "batch", "--json", "--pid", str(child.pid), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with killed_after(tracer):
        assert tracer.stderr.readline().strip() == "Tracing signals... Hit Ctrl-C to end."
        for _ in range(12):
            os.kill(child.pid, signal.SIGUSR1)
            child.wait_ack()
        for _ in range(30):
            os.kill(child.pid, signal.SIGUSR2)
        os.kill(os.getpid(), 0)  # not about the child: the kernel-side pid filter drops it
        time.sleep(0.3)
        tracer.send_signal(signal.SIGINT)  # our own child
        out, err = tracer.communicate(timeout=30)
    assert tracer.returncode == 0, err
    doc = json.loads(out)
    flows = {(f["sender_pid"], f["target_pid"], f["signame"]): f for f in doc["flows"]}
    me = os.getpid()
    assert set(flows) == {(me, child.pid, "SIGUSR1"), (me, child.pid, "SIGUSR2")}
    usr1, usr2 = flows[(me, child.pid, "SIGUSR1")], flows[(me, child.pid, "SIGUSR2")]
    assert (usr1["count"], usr1["results"]["delivered"], usr1["syscall"]) == (12, 12, "kill")
    assert (usr2["count"], usr2["results"]["ignored"]) == (30, 30)
    assert usr1["target_comm"].startswith("python")
    (ret,) = [r for r in doc["sigreturn"] if r["pid"] == child.pid]
    assert ret["count"] == 12 == int(child.ask("count SIGUSR1"))
    assert doc["lost_events"] == 0
    assert doc["duration_s"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["batch", "--duration", "nan"], "must be more than 0 and at most 366 days"),
        (["batch", "--duration", "inf"], "at most 366 days"),
        (["--delay", "nan"], "must be at least 0.05"),
        (["--delay", "0.0001"], "must be at least 0.05"),  # the view never drew and ignored q
        (["batch", "--interval", "1e308"], "at most 3600"),
        (["record", "-o", "x", "--interval", "-1"], "at least 0.05"),
        (["batch", "-s", "0"], "signal 0 is a probe"),
        (["replay", "--speed", "nan", "x"], "a speed must be"),
    ],
)
def test_absurd_numbers_are_one_line(args, needle):
    assert_one_line_error(run(*args), needle)


def test_doctor_as_an_unprivileged_user_says_what_fails():
    result = run_unprivileged("doctor")
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 1
    assert "FAIL  root or CAP_BPF+CAP_PERFMON" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a user CAP_BPF and CAP_PERFMON needs root")
def test_doctor_as_the_documented_cap_bpf_user():
    result = run_unprivileged("doctor", caps=("bpf", "perfmon"))
    assert "Traceback" not in result.stderr + result.stdout
    assert "ok    root or CAP_BPF+CAP_PERFMON" in result.stdout


@pytest.mark.bpf
def test_batch_prints_its_results_on_sighup(bpf_ready, spawn):
    child = spawn()
    child.ask("ignore SIGUSR2")
    tracer = subprocess.Popen(
        [*SIGTOP, "batch", "--json", "--pid", str(child.pid), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with killed_after(tracer):
        assert tracer.stderr.readline().startswith("Tracing")
        for _ in range(9):
            os.kill(child.pid, signal.SIGUSR2)
        time.sleep(0.3)
        tracer.send_signal(signal.SIGHUP)  # our own child: its terminal closed
        out, err = tracer.communicate(timeout=30)
    assert tracer.returncode == 0, err
    (flow,) = json.loads(out)["flows"]
    assert (flow["target_pid"], flow["count"]) == (child.pid, 9)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the check as another user")
@pytest.mark.parametrize("others_can_write", [False, True])
def test_make_run_says_it_runs_the_tree_as_root_and_refuses_a_shared_tree(tmp_path, others_can_write):
    import shutil
    import stat

    tree = tmp_path / "checkout"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy(Path(__file__).parent.parent / "scripts" / "run-as-root.sh", tree / "scripts")
    (tree / "sigtop.py").write_text("# code that would run as root\n")
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "sudo").write_text('#!/bin/sh\necho "sudo asked to run: $*"\n')  # records, runs nothing
    (stub / "sudo").chmod(0o755)
    if others_can_write:
        (tree / "sigtop.py").chmod(0o666)
    for path in (tmp_path, tree, tree / "scripts", stub):
        path.chmod(path.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
    shutil.chown(tree, 65534, 65534)
    result = subprocess.run(
        [*as_nobody(), str(tree / "scripts" / "run-as-root.sh"), "--pid", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{stub}:/usr/bin:/bin", "HOME": "/"},
    )
    if others_can_write:
        assert result.returncode == 2
        assert "refusing to run this tree's code as root: ./sigtop.py is writable by other users" in result.stderr
        assert "sudo asked" not in result.stdout
    else:
        assert result.returncode == 0, result.stderr
        assert "code in this tree (writable by nobody) runs as root" in result.stderr
        assert result.stdout.strip() == "sudo asked to run: .venv/bin/sigtop --pid 1"


def test_version_is_the_package_metadata():
    from importlib import metadata

    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"sigtop {metadata.version('sigtop')}"


@pytest.mark.bpf
def test_a_cgroup_of_80_mb_is_refused_a_compile_in_one_line_and_runs_a_kept_program(bpf_ready, tmp_path):
    """Inside a cgroup limited to 80 MB, a compile would be OOM-killed with nothing printed: sigtop
    says so on one line and exits 2 (cgroup v2's memory.max, or v1's memory controller). Once a
    start outside it has compiled the program, the same command runs inside it and counts."""
    v1 = Path("/sys/fs/cgroup/memory")
    if v1.is_dir() and (v1 / "memory.limit_in_bytes").exists():
        group, limit_file = v1 / f"sigtop-test-{os.getpid()}", "memory.limit_in_bytes"
    else:
        group, limit_file = Path(f"/sys/fs/cgroup/sigtop-test-{os.getpid()}"), "memory.max"
    env = {**os.environ, "SIGTOP_CACHE_DIR": str(tmp_path / "compiled")}  # nothing compiled yet
    batch = [*SIGTOP, "batch", "--duration", "1", "--json"]
    group.mkdir()
    try:
        (group / limit_file).write_text(str(80 << 20))

        def inside() -> subprocess.CompletedProcess:
            return subprocess.run(
                ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *batch],
                capture_output=True,
                text=True,
                timeout=120,
                env=env,
            )

        refused = inside()
        assert refused.returncode == 2, refused.stderr
        assert "needs about 200 MB" in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
        assert "Traceback" not in refused.stderr
        compiled = subprocess.run(batch, capture_output=True, text=True, timeout=120, env=env)
        assert compiled.returncode == 0, compiled.stderr
        kept = inside()
        assert kept.returncode == 0, kept.stderr
        assert "flows" in json.loads(kept.stdout)
    finally:
        deadline = time.monotonic() + 10
        while True:  # the child has exited; its cgroup empties a moment later
            try:
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
