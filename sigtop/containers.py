"""Which container or service a cgroup path belongs to: Docker, containerd and CRI-O (Kubernetes pods),
Podman, LXC, systemd services and user sessions; the raw path where nothing matches.

Pure: a path in, a `Container` out. The shapes are the ones the runtimes and
managers write (cgroupfs and systemd drivers, v1 and v2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Container:
    kind: str  # docker, k8s, cri-o, containerd, podman, lxc, service, session, user-service; "" on the host
    name: str  # the readable part: a short container id, a service or session name
    pod: str = ""  # Kubernetes pod UID
    runtime: str = ""  # Kubernetes: the runtime that runs the container (containerd, cri-o, docker)

    @property
    def label(self) -> str:
        """What a column shows: docker:4f2a9c1b7e3d, k8s:<pod>/<ctr>, svc:nginx, ..."""
        if not self.kind:
            return ""
        if self.kind == "k8s":
            return f"k8s:{self.pod[:8]}/{self.name}" if self.name else f"k8s:{self.pod[:8]}"
        short = {"service": "svc", "user-service": "usvc"}.get(self.kind, self.kind)
        return f"{short}:{self.name}"


HOST = Container("", "")
_ID = r"([0-9a-f]{64})"
_POD = r"pod([0-9a-f_-]{36})"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Kubernetes, systemd driver: kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
    (re.compile(rf"kubepods.*?-{_POD}\.slice(?:/(docker|cri-containerd|crio)-{_ID}\.scope)?"), "k8s-systemd"),
    # Kubernetes, cgroupfs driver: /kubepods/burstable/pod<uid>/<id>
    (re.compile(rf"/kubepods(?:/[a-z]+)?/{_POD}(?:/{_ID})?"), "k8s-cgroupfs"),
    (re.compile(rf"(?:^|/)docker[-/]{_ID}(?:\.scope)?"), "docker"),
    (re.compile(rf"(?:^|/)crio-(?:conmon-)?{_ID}\.scope"), "cri-o"),
    (re.compile(rf"(?:^|/)cri-containerd-{_ID}\.scope"), "containerd"),
    (re.compile(rf"(?:^|/)libpod-(?:conmon-)?{_ID}(?:\.scope)?"), "podman"),
    (re.compile(r"(?:^|/)lxc(?:\.payload)?[./]([^/]+)"), "lxc"),
    (re.compile(r"/user@(\d+)\.service/(?:.+/)?([^/]+)\.service$"), "user-service"),
    (re.compile(r"/user-(\d+)\.slice/session-([^/]+)\.scope"), "session"),
    (re.compile(r"/system\.slice/(?:.+/)?([^/]+)\.service$"), "service"),
]
_RUNTIMES = {"docker": "docker", "cri-containerd": "containerd", "crio": "cri-o"}


@lru_cache(maxsize=4096)
def container_of(cgroup: str) -> Container:
    """The container or service a cgroup path names (HOST where none)."""
    for pattern, kind in _PATTERNS:
        m = pattern.search(cgroup)
        if m is None:
            continue
        if kind == "k8s-systemd":
            pod, runtime, cid = m.group(1).replace("_", "-"), m.group(2) or "", m.group(3) or ""
            return Container("k8s", cid[:12], pod=pod, runtime=_RUNTIMES.get(runtime, runtime))
        if kind == "k8s-cgroupfs":
            return Container("k8s", (m.group(2) or "")[:12], pod=m.group(1))
        if kind in ("docker", "cri-o", "containerd", "podman"):
            return Container(kind, m.group(1)[:12])
        if kind == "user-service":
            return Container(kind, f"{m.group(2)} (uid {m.group(1)})")
        if kind == "session":
            return Container(kind, f"{m.group(2)} (uid {m.group(1)})")
        return Container(kind, m.group(1))
    return HOST
