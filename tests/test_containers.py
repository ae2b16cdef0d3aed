"""Container and service names from real-world cgroup path shapes (v1 and v2, cgroupfs and systemd drivers)."""

from __future__ import annotations

import pytest

from sigtop.containers import container_of

CID = "4f2a9c1b7e3d" + "a" * 52
POD = "0b6a2f6e-3c1d-4f5e-9a8b-7c6d5e4f3a2b"


@pytest.mark.parametrize(
    ("path", "label", "kind"),
    [
        (f"/docker/{CID}", "docker:4f2a9c1b7e3d", "docker"),
        (f"/system.slice/docker-{CID}.scope", "docker:4f2a9c1b7e3d", "docker"),
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
            f"cri-containerd-{CID}.scope",
            "k8s:0b6a2f6e/4f2a9c1b7e3d",
            "k8s",
        ),
        (
            f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/crio-{CID}.scope",
            "k8s:0b6a2f6e/4f2a9c1b7e3d",
            "k8s",
        ),
        (f"/kubepods/besteffort/pod{POD}/{CID}", "k8s:0b6a2f6e/4f2a9c1b7e3d", "k8s"),
        (f"/kubepods/pod{POD}", "k8s:0b6a2f6e", "k8s"),
        (f"/machine.slice/crio-{CID}.scope", "cri-o:4f2a9c1b7e3d", "cri-o"),
        (f"/system.slice/cri-containerd-{CID}.scope", "containerd:4f2a9c1b7e3d", "containerd"),
        (f"/machine.slice/libpod-{CID}.scope", "podman:4f2a9c1b7e3d", "podman"),
        (
            f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope/container",
            "podman:4f2a9c1b7e3d",
            "podman",
        ),
        ("/lxc/web01", "lxc:web01", "lxc"),
        ("/lxc.payload.web01/init.scope", "lxc:web01", "lxc"),
        ("/system.slice/nginx.service", "svc:nginx", "service"),
        ("/system.slice/system-getty.slice/getty@tty1.service", "svc:getty@tty1", "service"),
        ("/user.slice/user-1000.slice/session-3.scope", "session:3 (uid 1000)", "session"),
        (
            "/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service",
            "usvc:syncthing (uid 1000)",
            "user-service",
        ),
        ("/", "", ""),
        ("/process_api/ecbd48e4c10a17367d937b91ce07d40a", "", ""),
        ("", "", ""),
    ],
)
def test_cgroup_paths_name_their_container(path, label, kind):
    found = container_of(path)
    assert (found.label, found.kind) == (label, kind)


def test_a_kubernetes_container_keeps_its_pod_and_runtime():
    path = (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/crio-{CID}.scope"
    )
    found = container_of(path)
    assert (found.pod, found.runtime, found.name) == (POD, "cri-o", CID[:12])


@pytest.fixture
def runtime_cgroups():
    """Real cgroup v2 directories named as Docker and systemd name them; removed afterwards."""
    from pathlib import Path

    roots = [p for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")) if (p / "cgroup.procs").exists()]
    if not roots:
        pytest.skip("no writable cgroup v2 hierarchy")
    made: list[Path] = []

    def make(relative: str) -> Path:
        path = roots[0]
        for part in relative.strip("/").split("/"):
            path = path / part
            if not path.exists():
                path.mkdir()
                made.append(path)
        return path

    yield make
    for path in reversed(made):
        path.rmdir()


RUNTIME_CGROUPS = [
    (f"/sigtop-test.slice/docker-{CID}.scope", "docker:4f2a9c1b7e3d"),
    (
        f"/sigtop-test.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD.replace('-', '_')}.slice/"
        f"cri-containerd-{CID}.scope",
        "k8s:0b6a2f6e/4f2a9c1b7e3d",
    ),
    (f"/sigtop-test.slice/machine.slice/libpod-{CID}.scope", "podman:4f2a9c1b7e3d"),
    ("/sigtop-test.slice/lxc.payload.web01", "lxc:web01"),
]


@pytest.mark.bpf
@pytest.mark.parametrize(("container_path", "label"), RUNTIME_CGROUPS)
def test_flows_name_the_containers_of_both_ends(bpf_ready, spawn, runtime_cgroups, container_path, label):
    from sigtop.export.report import to_json
    from sigtop.live.collector import BpfSource
    from sigtop.live.config import TraceConfig
    from sigtop.model import SignalModel
    from sigtop.tables import TABLES
    from sigtop.tables.base import View

    target, sender = spawn(), spawn()
    target.ask("ignore SIGUSR2")
    container = runtime_cgroups(container_path)
    service = runtime_cgroups("/sigtop-test.slice/system.slice/sigtop-probe.service")
    source = BpfSource(TraceConfig(pids=(target.pid,), details=False))
    try:
        (container / "cgroup.procs").write_text(str(target.pid))
        (service / "cgroup.procs").write_text(str(sender.pid))
        source.attach()
        source.collect()
        assert sender.ask(f"kill {target.pid} SIGUSR2 4") == "ok"
        model = SignalModel()
        model.apply(source.collect())
    finally:
        source.detach()
        target.stop()  # out of the cgroups before they are removed
        sender.stop()
    (row,) = [r for r in model.flows.values() if r.key.sender_pid == sender.pid]
    assert (row.count, row.sender_container, row.target_container) == (4, "svc:sigtop-probe", label)
    assert TABLES["flows"].column("container").cell(row, View(model)).plain == f"svc:sigtop-probe→{label}"
    (doc,) = [f for f in to_json(model)["flows"] if f["sender_pid"] == sender.pid]
    assert doc["target_container"]["label"] == label
    assert doc["sender_container"]["kind"] == "service"
    from sigtop.filters import FlowFilter

    flows = TABLES["flows"]
    assert flows.select(model, row, FlowFilter.parse(f"ctr:{label.split(':')[0]}"))
    assert not flows.select(model, row, FlowFilter.parse("ctr:nothing-like-it"))


SEND_AND_GO = """
import os, sys
sys.stdin.readline()  # moved into its cgroup by now
for _ in range(int(sys.argv[2])):
    os.kill(int(sys.argv[1]), 12)
"""


@pytest.mark.bpf
def test_a_short_lived_senders_container_comes_from_the_kernel(bpf_ready, spawn, runtime_cgroups):
    """It exits before /proc is read: the kernel's cgroup id, taken when the flow began, names it."""
    import subprocess
    import sys

    from sigtop.live.collector import BpfSource
    from sigtop.live.config import TraceConfig
    from sigtop.model import SignalModel

    target = spawn()
    target.ask("ignore SIGUSR2")
    docker = runtime_cgroups(f"/sigtop-test.slice/docker-{CID}.scope")
    source = BpfSource(TraceConfig(pids=(target.pid,), details=False))
    source.attach()
    try:
        source.collect()
        sender = subprocess.Popen([sys.executable, "-c", SEND_AND_GO, str(target.pid), "3"], stdin=subprocess.PIPE)
        (docker / "cgroup.procs").write_text(str(sender.pid))
        sender.communicate(b"go\n", timeout=30)  # sends, exits: gone before the collection
        assert sender.returncode == 0
        model = SignalModel()
        model.apply(source.collect())
    finally:
        source.detach()
        target.stop()
    (row,) = [r for r in model.flows.values() if r.key.sender_pid == sender.pid]
    assert sender.pid not in model.procs  # /proc never saw it
    assert (row.count, row.sender_container) == (3, "docker:4f2a9c1b7e3d")
