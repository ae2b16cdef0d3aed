"""A real container runtime's stop: podman with runc, whose SIGTERM and SIGKILL come from two
runc processes. The death must read as a stop timeout, and say what the SIGTERM did."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_BPF

pytestmark = pytest.mark.bpf

BUSYBOX = Path("/bin/busybox")  # busybox-static's: runs in an image with nothing else


def _podman_or_skip() -> str:
    found = shutil.which("podman")
    if found and shutil.which("runc") and BUSYBOX.exists():
        return found
    if REQUIRE_BPF:  # CI installs them (make setup): they must be there
        pytest.fail("podman, runc or busybox-static is missing (make setup installs Debian's)")
    pytest.skip("podman, runc and busybox-static are not installed (make setup installs them)")


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    """podman with runc, and an image made here from busybox; both removed after."""
    binary = _podman_or_skip()
    # podman's default rlimits (nofile, nproc at the host's maximum) are refused in this
    # sandbox (runc: "error setting rlimit type 7: operation not permitted"): none are set.
    conf = tmp_path / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    cmd = [binary, "--runtime", "runc"]
    image = f"localhost/sigtop-test-busybox:{os.getpid()}"
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    os.symlink("busybox", root / "bin" / "sleep")
    with tarfile.open(tmp_path / "image.tar", "w") as tar:
        tar.add(root, arcname=".")
    subprocess.run([*cmd, "import", str(tmp_path / "image.tar"), image], env=env, check=True, capture_output=True)
    os.environ["CONTAINERS_CONF"] = str(conf)  # for the commands the test runs
    try:
        yield cmd
    finally:
        subprocess.run([*cmd, "rm", "-f", "-a", "--filter", f"ancestor={image}"], env=env, capture_output=True)
        subprocess.run([*cmd, "rmi", "-f", image], env=env, capture_output=True)
        del os.environ["CONTAINERS_CONF"]
        with contextlib.suppress(OSError):
            shutil.rmtree(root)


def test_a_podman_stop_of_an_init_without_a_handler_is_a_stop_timeout(tracer, measure, podman):
    """`podman stop -t 2`: runc sends SIGTERM, which the container's init (sleep, pid 1 of its
    namespace, no handler) never sees, then after 2 s another runc sends SIGKILL."""
    name = f"sigtop-test-{os.getpid()}"
    image = f"localhost/sigtop-test-busybox:{os.getpid()}"
    stopping: list[subprocess.Popen] = []
    ids: dict[str, object] = {}

    def work():  # started under the same model: /proc of the container's init is read as it starts
        started = subprocess.run([*podman, "run", "-d", "--name", name, image, "/bin/sleep", "600"],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
        assert started.returncode == 0, started.stderr
        ids["cid"] = started.stdout.strip()
        ids["pid"] = int(subprocess.run([*podman, "inspect", "-f", "{{.State.Pid}}", name],
                                        capture_output=True, text=True, check=True).stdout)  # fmt: skip
        ids["begun"] = time.monotonic()
        stopping.append(subprocess.Popen([*podman, "stop", "-t", "2", name], stdout=subprocess.DEVNULL))

    try:
        model = measure(work, until=lambda m: any(d.pid == ids["pid"] for d in m.deaths) or not tracer.raw_generate,
                        timeout_s=30)  # fmt: skip
    finally:
        if stopping:
            assert stopping[0].wait(timeout=60) == 0
    pid, cid = ids["pid"], ids["cid"]
    assert time.monotonic() - ids["begun"] >= 2  # it waited out the timeout: the SIGTERM did nothing
    if not tracer.raw_generate:  # no BTF: no deaths to read (tests/test_deaths.py holds that)
        return
    (death,) = [d for d in model.deaths if d.pid == pid]
    assert death.sig == 9
    assert death.cause_kind == "stop-timeout", death.cause
    assert " runc via kill, after SIGTERM from " in death.cause
    assert " runc " in death.cause.split("after SIGTERM from ", 1)[1]
    assert "(stop timeout); the SIGTERM did nothing (ns init: dropped)" in death.cause, death.cause
    assert death.cgroup.endswith(cid)  # the container's own cgroup, as the kernel saw it
    (term,) = [r for r in model.flows.values() if r.key.target_pid == pid and r.key.sig == 15]
    assert (term.count, term.sender_comm) == (1, "runc")
    assert term.key.sender_pid != death.sender_pid  # two runc processes: why the same-sender rule missed it
