"""A signal workload for screenshots, demos and recordings: every kind sigtop shows.

It signals only processes it starts itself, in a process group it creates.
Run it while `sigtop` or `sigtop record` runs. Ends by itself in about DURATION seconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NAME = 15
SYS_tgkill, SYS_rt_sigqueueinfo, SYS_signalfd4 = 234, 129, 289

CHILD = r"""
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
name = sys.argv[1].encode()
libc.prctl(15, name, 0, 0, 0)
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.signal(signal.SIGUSR2, signal.SIG_IGN)
signal.signal(signal.SIGHUP, lambda *a: None)
if name == b"sfd-daemon":
    mask = ctypes.c_uint64((1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1)))
    fd = libc.syscall(289, -1, ctypes.byref(mask), 8, 0o2000000 | 0o4000)
    time.sleep(0.5)
    mask = ctypes.c_uint64(mask.value | (1 << (signal.SIGCHLD - 1)))
    libc.syscall(289, fd, ctypes.byref(mask), 8, 0)
if name == b"crasher":
    time.sleep(0.3)
    ctypes.string_at(0)
if name == b"stuck-daemon":  # blocks SIGTERM (a forgotten sigprocmask): it never sees one
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
if name == b"slow-stopper":  # handles SIGTERM and keeps running: stopped with SIGKILL after a timeout
    signal.signal(signal.SIGTERM, lambda *a: None)
time.sleep(float(sys.argv[2]))
"""


class SigInfo(ctypes.Structure):
    _fields_ = [
        ("signo", ctypes.c_int),
        ("errno", ctypes.c_int),
        ("code", ctypes.c_int),
        ("pad", ctypes.c_int),
        ("pid", ctypes.c_int),
        ("uid", ctypes.c_uint),
        ("value", ctypes.c_uint64),
        ("rest", ctypes.c_byte * 96),
    ]


def main(duration: float = 4.0) -> None:
    libc.prctl(PR_SET_NAME, b"workload", 0, 0, 0)
    names = ["nginx-worker", "[red]x", "sfd-daemon", "crasher", "stuck-daemon", "slow-stopper"]
    kids = {}
    for name in names:
        kids[name] = subprocess.Popen([sys.executable, "-c", CHILD, name, str(duration + 1)], process_group=0)
    # A container's init: `sleep` as pid 1 of a new pid namespace, which has no SIGTERM handler.
    container = subprocess.Popen(["unshare", "--pid", "--fork", "sleep", str(duration + 1)], process_group=0)
    time.sleep(0.4)
    container_init = _only_child(container.pid)
    os.kill(kids["stuck-daemon"].pid, signal.SIGTERM)  # stays pending: blocked
    for _ in range(3):
        if container_init:
            os.kill(container_init, signal.SIGTERM)  # dropped by the kernel: a namespace init, no handler
    os.kill(kids["slow-stopper"].pid, signal.SIGTERM)  # handled, ignored in effect
    forged = SigInfo(signo=signal.SIGUSR1, code=-1, pid=1, uid=0, value=0)  # claims to come from init
    libc.syscall(SYS_rt_sigqueueinfo, kids["nginx-worker"].pid, signal.SIGUSR1, ctypes.byref(forged))
    stop_at = time.monotonic() + 1.0
    worker, red = kids["nginx-worker"].pid, kids["[red]x"].pid
    pidfd = os.pidfd_open(worker)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for _ in range(10):
            os.kill(worker, signal.SIGUSR1)
        for _ in range(5):
            os.kill(worker, signal.SIGUSR2)
        libc.syscall(SYS_tgkill, red, red, signal.SIGHUP)
        info = SigInfo(signo=signal.SIGUSR1, code=-1, pid=os.getpid(), uid=os.getuid(), value=0xBEEF)
        libc.syscall(SYS_rt_sigqueueinfo, worker, signal.SIGUSR1, ctypes.byref(info))
        if stop_at and time.monotonic() > stop_at:  # the stop timeout: then SIGKILL, as runtimes do
            os.kill(kids["slow-stopper"].pid, signal.SIGKILL)
            stop_at = 0.0
        signal.pidfd_send_signal(pidfd, signal.SIGUSR1)
        for probe in range(3):  # 30 a second: what a scan for processes looks like
            try:
                os.kill(4194304 + 777 + probe, signal.SIGTERM)  # beyond pid_max: no such process
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    os.close(pidfd)
    os.kill(red, signal.SIGTERM)
    for child in [*kids.values(), container]:
        if child.poll() is None:
            child.kill()
        child.wait()
    if container_init:
        try:
            os.kill(container_init, signal.SIGKILL)  # ours (unshare's child); SIGKILL from outside is never dropped
        except ProcessLookupError:
            pass


def _only_child(pid: int) -> int:
    """The one child of a process we started (unshare's init), 0 if it has none yet."""
    for _ in range(50):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return 0
        if children:
            return int(children[0])
        time.sleep(0.02)
    return 0


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0)
