"""The kernel's own counters of each loaded program: how often it ran, and how often it was skipped.

A tracepoint program the kernel skips (another program of that kind was
already running on the CPU; or a raw tracepoint program interrupted by its
own tracepoint) leaves no trace but its `recursion_misses` in
bpf_prog_info. Each skip is a signal, a send or a delivery not counted:
sigtop reports every one of them.
"""

from __future__ import annotations

import struct
from typing import Any

from sigtop.live.bpfsys import obj_info

# struct bpf_prog_info (include/uapi/linux/bpf.h): the fields read here, by offset.
PROG_INFO_SIZE = 224
NAME_OFFSET, NAME_LEN = 64, 16
RUN_TIME_NS_OFFSET, RUN_CNT_OFFSET, RECURSION_MISSES_OFFSET = 192, 200, 208


def prog_info(fd: int) -> tuple[str, int, int, int]:
    """(name, run_cnt, run_time_ns, recursion_misses) of the program behind an fd."""
    raw = obj_info(fd, PROG_INFO_SIZE)
    name = raw[NAME_OFFSET : NAME_OFFSET + NAME_LEN].split(b"\0", 1)[0].decode(errors="replace")
    run_cnt, run_time, misses = (
        struct.unpack_from("<Q", raw, off)[0] for off in (RUN_CNT_OFFSET, RUN_TIME_NS_OFFSET, RECURSION_MISSES_OFFSET)
    )
    return name, run_cnt, run_time, misses


def probe_name(function_name: bytes) -> str:
    """A readable name for one of BCC's function names: 'signal_generate', 'sys_enter_kill'."""
    name = function_name.decode(errors="replace")
    for prefix in ("tracepoint__syscalls__", "tracepoint__signal__", "raw_tracepoint__"):
        name = name.removeprefix(prefix)
    return name


def program_misses(bpf: Any) -> dict[str, int]:
    """Every loaded program's skipped runs so far (cumulative), by probe name."""
    misses = {}
    for fn_name, fn in bpf.funcs.items():
        _name, _runs, _ns, skipped = prog_info(fn.fd)
        misses[probe_name(fn_name)] = skipped
    return misses


class ProgramMisses:
    """Skipped runs per program since the previous read (the kernel's counters are cumulative)."""

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf
        self._prev: dict[str, int] = {}

    def read(self) -> dict[str, int]:
        now = program_misses(self.bpf)
        delta = {name: n - self._prev.get(name, 0) for name, n in now.items() if n != self._prev.get(name, 0)}
        self._prev = now
        return delta
